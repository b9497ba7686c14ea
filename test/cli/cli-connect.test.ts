/**
 * Connecting to any Temporal deployment: TLS, mTLS and API keys for real, through a TLS-terminating proxy in front of the
 * dev server (certificates made by openssl here); profiles of temporal.toml; and one distinct, actionable error for each
 * way a connection fails (unreachable, TLS handshake, credentials refused, namespace not found, search attributes).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client } from '@temporalio/client';
import { connectClient, connectWorker } from '../../src/client/connection';
import { resolveTemporalConnection } from '../../src/config/temporal-connection';
import { resolveTemporalCli } from '../../src/dev/tools';
import { streamConsumerWorkflowId } from '../../src/ids';
import { cliEnvironment, killAllCliProcesses, runCli } from '../helpers/cli';
import { createStream, kclTestContext, type KclTestContext } from '../helpers/kcl';
import { uniqueName } from '../helpers/stack';
import { makeCertificates, startTlsProxy, type TestCertificates, type TlsProxy } from '../helpers/tls-proxy';

describe('connecting to Temporal', () => {
  let context: KclTestContext;
  let certificates: TestCertificates;
  const proxies: TlsProxy[] = [];
  before(async () => {
    context = await kclTestContext();
    certificates = makeCertificates();
  });
  after(async () => {
    await killAllCliProcesses();
    for (const proxy of proxies) await proxy.close();
    await context.close();
  });
  const proxy = async (options: { requireClientCertificate?: boolean; apiKey?: string } = {}) => {
    const started = await startTlsProxy({ upstream: context.stack.temporalAddress, certificates, ...options });
    proxies.push(started);
    return started;
  };
  /** The CLI's environment without the plain address, plus `extra`. */
  const envWith = (extra: Record<string, string>) => {
    const env = cliEnvironment(context.stack, extra);
    return env;
  };
  /** status of a consumer nobody started: "no consumer found" proves connection and namespace check went through. */
  const statusArgs = () => ['status', '--app', uniqueName('conn'), '--stream', 'none'];

  test('TLS: client and worker verify the server against the given CA, and the CLI gets through', async () => {
    const tls = await proxy();
    const settings = resolveTemporalConnection(
      { address: tls.address, namespace: context.stack.namespace, tlsCaPath: certificates.caPath },
      {},
    );
    const client = await connectClient(settings);
    await client.close();
    const worker = await connectWorker(settings);
    await worker.close();
    const run = await runCli(
      statusArgs(),
      envWith({ TEMPORAL_ADDRESS: tls.address, TEMPORAL_TLS_SERVER_CA_CERT_PATH: certificates.caPath }),
    );
    assert.match(run.stderr, /no consumer found/, run.stderr);
    assert.ok(
      tls.requests.some((r) => r.method.endsWith('/DescribeNamespace')),
      'requests went through the proxy',
    );

    // Trusting another CA: the server certificate is refused, by the client, the worker and the CLI alike.
    const untrusted = resolveTemporalConnection(
      { address: tls.address, namespace: context.stack.namespace, tlsCaPath: certificates.otherCaPath },
      {},
    );
    await assert.rejects(connectClient(untrusted), {
      name: 'TemporalTls',
      message: /TLS handshake with Temporal at localhost:\d+ failed/,
    });
    await assert.rejects(connectWorker(untrusted), { name: 'TemporalTls', message: /--tls-ca-path/ });
    const refused = await runCli(
      statusArgs(),
      envWith({ TEMPORAL_ADDRESS: tls.address, TEMPORAL_TLS_SERVER_CA_CERT_PATH: certificates.otherCaPath }),
    );
    assert.notEqual(refused.code, 0);
    assert.match(
      refused.stderr,
      /TLS handshake with Temporal at localhost:\d+ failed \(.*certificate/i,
      refused.stderr,
    );
  });

  test('mTLS: the client certificate is presented by client, worker and CLI; without it the handshake fails', async () => {
    const mtls = await proxy({ requireClientCertificate: true });
    const base = { address: mtls.address, namespace: context.stack.namespace, tlsCaPath: certificates.caPath };
    const settings = resolveTemporalConnection(
      { ...base, tlsCertPath: certificates.clientCertPath, tlsKeyPath: certificates.clientKeyPath },
      {},
    );
    await (await connectClient(settings)).close();
    await (await connectWorker(settings)).close();
    const run = await runCli(
      statusArgs(),
      envWith({
        TEMPORAL_ADDRESS: mtls.address,
        TEMPORAL_TLS_SERVER_CA_CERT_PATH: certificates.caPath,
        TEMPORAL_TLS_CLIENT_CERT_PATH: certificates.clientCertPath,
        TEMPORAL_TLS_CLIENT_KEY_PATH: certificates.clientKeyPath,
      }),
    );
    assert.match(run.stderr, /no consumer found/, run.stderr);
    assert.ok(mtls.requests.length >= 3, `requests: ${mtls.requests.length}`);
    for (const request of mtls.requests) assert.equal(request.clientCertificate, 'kcl-client', request.method);

    const without = resolveTemporalConnection(base, {});
    await assert.rejects(connectClient(without), { name: 'TemporalTls' });
    await assert.rejects(connectWorker(without), { name: 'TemporalTls' });
  });

  test('API key: it arrives as `authorization: Bearer <key>` from client, worker and CLI; a wrong one is refused', async () => {
    const keyed = await proxy({ apiKey: 'the-right-key' });
    const settings = resolveTemporalConnection(
      { address: keyed.address, namespace: context.stack.namespace, tlsCaPath: certificates.caPath },
      { TEMPORAL_API_KEY: 'the-right-key' },
    );
    assert.equal(settings.apiKey, 'the-right-key');
    await (await connectClient(settings)).close();
    await (await connectWorker(settings)).close();
    const run = await runCli(
      statusArgs(),
      envWith({
        TEMPORAL_ADDRESS: keyed.address,
        TEMPORAL_TLS_SERVER_CA_CERT_PATH: certificates.caPath,
        TEMPORAL_API_KEY: 'the-right-key',
      }),
    );
    assert.match(run.stderr, /no consumer found/, run.stderr);
    assert.ok(keyed.requests.length >= 3);
    for (const request of keyed.requests) assert.equal(request.authorization, 'Bearer the-right-key', request.method);

    const wrong = { ...settings, apiKey: 'a-wrong-key' };
    await assert.rejects(connectClient(wrong), { name: 'TemporalAuth', message: /refused the credentials.*API key/s });
    await assert.rejects(connectWorker(wrong), { name: 'TemporalAuth' });
    const refused = await runCli(
      statusArgs(),
      envWith({
        TEMPORAL_ADDRESS: keyed.address,
        TEMPORAL_TLS_SERVER_CA_CERT_PATH: certificates.caPath,
        TEMPORAL_API_KEY: 'a-wrong-key',
      }),
    );
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /refused the credentials for namespace .*TEMPORAL_API_KEY/s, refused.stderr);
  });

  test('a temporal.toml profile: --config-file/--profile select it; the environment overrides it; flags override both', async () => {
    const tls = await proxy({ apiKey: 'profile-key' });
    const file = join(certificates.dir, 'temporal.toml');
    writeFileSync(
      file,
      [
        '[profile.default]',
        'address = "127.0.0.1:1"',
        '[profile.prod]',
        `address = "${tls.address}"`,
        `namespace = "${context.stack.namespace}"`,
        'api_key = "profile-key"',
        '[profile.prod.tls]',
        `server_ca_cert_path = "${certificates.caPath}"`,
      ].join('\n'),
    );
    const env = cliEnvironment(context.stack);
    delete env.TEMPORAL_ADDRESS;
    delete env.TEMPORAL_NAMESPACE;
    const run = await runCli([...statusArgs(), '--config-file', file, '--profile', 'prod'], env);
    assert.match(run.stderr, /no consumer found/, run.stderr);
    assert.ok(tls.requests.every((r) => r.authorization === 'Bearer profile-key') && tls.requests.length > 0);
    // TEMPORAL_PROFILE and TEMPORAL_CONFIG_FILE select the same.
    const byEnv = await runCli(statusArgs(), { ...env, TEMPORAL_CONFIG_FILE: file, TEMPORAL_PROFILE: 'prod' });
    assert.match(byEnv.stderr, /no consumer found/, byEnv.stderr);

    // Precedence, resolved without a server: flags > environment > profile.
    const fromProfile = resolveTemporalConnection({ configFile: file, profile: 'prod' }, {});
    assert.equal(fromProfile.address, tls.address);
    assert.equal(fromProfile.apiKey, 'profile-key');
    const envOverrides = resolveTemporalConnection(
      { configFile: file, profile: 'prod' },
      { TEMPORAL_ADDRESS: 'env-host:7233', TEMPORAL_API_KEY: 'env-key' },
    );
    assert.equal(envOverrides.address, 'env-host:7233');
    assert.equal(envOverrides.apiKey, 'env-key');
    assert.equal(
      envOverrides.namespace,
      context.stack.namespace,
      'what the environment leaves out comes from the profile',
    );
    const flagOverrides = resolveTemporalConnection(
      { configFile: file, profile: 'prod', address: 'flag-host:7233', namespace: 'flag-ns', apiKey: 'flag-key' },
      { TEMPORAL_ADDRESS: 'env-host:7233', TEMPORAL_NAMESPACE: 'env-ns', TEMPORAL_API_KEY: 'env-key' },
    );
    assert.deepEqual(
      [flagOverrides.address, flagOverrides.namespace, flagOverrides.apiKey],
      ['flag-host:7233', 'flag-ns', 'flag-key'],
    );
    // The default profile applies without --profile; an unknown profile or a missing file is named.
    assert.equal(resolveTemporalConnection({ configFile: file }, {}).address, '127.0.0.1:1');
    assert.throws(
      () => resolveTemporalConnection({ configFile: file, profile: 'staging' }, {}),
      /Profile 'staging' not found/,
    );
    assert.throws(
      () => resolveTemporalConnection({ configFile: join(certificates.dir, 'nope.toml') }, {}),
      /--config-file .*nope\.toml not found/,
    );
  });

  test('an unreachable server and a missing namespace get their own errors', async () => {
    const unreachable = resolveTemporalConnection({ address: '127.0.0.1:1' }, {});
    await assert.rejects(connectClient(unreachable), {
      name: 'TemporalUnreachable',
      message: /cannot reach Temporal at 127\.0\.0\.1:1/,
    });
    await assert.rejects(connectWorker(unreachable), { name: 'TemporalUnreachable' });
    const namespace = uniqueName('no-such-namespace');
    const missing = resolveTemporalConnection({ address: context.stack.temporalAddress, namespace }, {});
    const expected = {
      name: 'NamespaceNotFound',
      message: new RegExp(
        `namespace ${namespace} not found.*temporal operator namespace create --namespace ${namespace}`,
      ),
    };
    await assert.rejects(connectClient(missing), expected);
    await assert.rejects(connectWorker(missing), expected);
    const run = await runCli(statusArgs(), envWith({ TEMPORAL_NAMESPACE: namespace }));
    assert.match(run.stderr, new RegExp(`namespace ${namespace} not found`), run.stderr);
  });

  test('start on a namespace without the Kcl* search attributes names them, gives the command, and --no-search-attributes works', async () => {
    const namespace = uniqueName('bare-ns');
    const cli = await resolveTemporalCli();
    assert.ok(cli.path, 'the temporal CLI is provisioned');
    const temporal = (args: string[]) =>
      execFileSync(cli.path!, [...args, '--address', context.stack.temporalAddress], { stdio: 'pipe' });
    temporal(['operator', 'namespace', 'create', '--namespace', namespace]);
    const streamName = await createStream(context.kinesis, 1, 'cli-sa');
    const env = envWith({ TEMPORAL_NAMESPACE: namespace, TEMPORAL_KCL_TASK_QUEUE: uniqueName('sa-tq') });
    // A new namespace is visible to the frontend a moment later.
    let run = await runCli(['start', '--app', 'sa-app', '--stream', streamName], env);
    for (let i = 0; i < 20 && /not found/.test(run.stderr); i++) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      run = await runCli(['start', '--app', 'sa-app', '--stream', streamName], env);
    }
    assert.notEqual(run.code, 0, run.stdout);
    for (const name of ['KclApplication', 'KclStream', 'KclShard', 'KclState'])
      assert.match(run.stderr, new RegExp(name));
    const commands = [...run.stderr.matchAll(/temporal operator search-attribute create .*--type Keyword/g)].map(
      (match) => match[0],
    );
    assert.equal(commands.length, 4, run.stderr);
    assert.match(run.stderr, /--no-search-attributes/);

    // The alternative works as said.
    const without = await runCli(
      ['start', '--app', 'sa-app-plain', '--stream', streamName, '--no-search-attributes'],
      env,
    );
    assert.equal(without.code, 0, without.stderr);

    // And the command given registers them: start then succeeds.
    for (const command of commands) temporal(command.replace(/^temporal /, '').split(' '));
    let started = await runCli(['start', '--app', 'sa-app', '--stream', streamName], env);
    for (let i = 0; i < 20 && started.code !== 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      started = await runCli(['start', '--app', 'sa-app', '--stream', streamName], env);
    }
    assert.equal(started.code, 0, started.stderr);
    for (const app of ['sa-app', 'sa-app-plain']) {
      // Started in the namespace without the attributes: terminate them there (no worker runs them).
      await new Client({ connection: context.client.connection, namespace }).workflow
        .getHandle(streamConsumerWorkflowId(app, streamName))
        .terminate('test done');
    }
  });
});

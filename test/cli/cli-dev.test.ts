/**
 * `temporal-kcl dev`, run from source on free ports given as flags: it prints where Temporal, its Web UI, Kinesis (and
 * its fan-out front) and DynamoDB listen; each answers a real request there (the UI serves its HTML page, the emulators
 * answer ListStreams and ListTables through the project's own clients); and on SIGINT it stops all of it: exit code 0, none of the servers it
 * started left running, nothing listening on its ports.
 */
import assert from 'node:assert/strict';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { ListStreamsCommand } from '@aws-sdk/client-kinesis';
import { Connection } from '@temporalio/client';
import { createDynamoDbClient, createKinesisClient, EMULATOR_CREDENTIALS } from '../../src/aws/clients';
import { canConnect, getFreePort } from '../../src/dev/net';
import { killAllCliProcesses, outputLine, spawnCli } from '../helpers/cli';
import { alive, descendants, type ProcessInfo } from '../helpers/process-group';

/** Resolves after `ms` without keeping the process alive (the test file must exit as soon as its test ends). */
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms).unref());

/** `count` distinct ports free on 127.0.0.1 right now. */
async function freePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await getFreePort());
  return [...ports];
}

describe('temporal-kcl dev', () => {
  after(async () => {
    await killAllCliProcesses();
  });

  test('prints the endpoints, each answers, and SIGINT stops every server it started (exit 0)', async () => {
    // Prepare
    const [temporalPort, uiPort, kinesisPort, dynamoDbPort] = (await freePorts(4)) as [number, number, number, number];
    const env: NodeJS.ProcessEnv = { ...process.env, NODE_NO_WARNINGS: '1' };
    const started = Date.now();

    // Act: start it, and wait until it says it is ready.
    const dev = spawnCli(
      [
        'dev',
        '--temporal-port',
        String(temporalPort),
        '--ui-port',
        String(uiPort),
        '--kinesis-port',
        String(kinesisPort),
        '--dynamodb-port',
        String(dynamoDbPort),
      ],
      env,
    );
    let logDir: string | undefined;
    let servers: ProcessInfo[] = [];
    try {
      await dev.waitFor(/Press Ctrl-C to stop/, 180_000);
      const readyMs = Date.now() - started;
      const out = dev.stdout();

      // Assess: the printed endpoints are on the ports asked for.
      const [, temporalAddress, namespace] = outputLine(out, /^Temporal {2,}(\S+) {2}\(namespace (\S+)\)$/m);
      const [, uiUrl] = outputLine(out, /^Temporal UI {2,}(\S+)$/m);
      const [, kinesisEndpoint, emulator] = outputLine(out, /^Kinesis {2,}(\S+) {2}\((\S+)\)$/m);
      const [, fanOutEndpoint] = outputLine(out, /^Kinesis \(fan-out\) {2,}(http:\/\/127\.0\.0\.1:\d+) {2}\(/m);
      const [, dynamoDbEndpoint] = outputLine(out, /^DynamoDB {2,}(\S+) {2}\(dynalite\)$/m);
      logDir = outputLine(out, /^Logs {2,}(\S+)$/m)[1];
      assert.equal(temporalAddress, `127.0.0.1:${temporalPort}`);
      assert.equal(namespace, 'default');
      assert.equal(uiUrl, `http://127.0.0.1:${uiPort}`);
      assert.equal(kinesisEndpoint, `http://127.0.0.1:${kinesisPort}`);
      assert.equal(emulator, 'kinesis-local');
      assert.equal(dynamoDbEndpoint, `http://127.0.0.1:${dynamoDbPort}`);
      assert.notEqual(fanOutEndpoint, kinesisEndpoint);
      assert.match(out, new RegExp(`^ +use: --kinesis-endpoint ${fanOutEndpoint} --retrieval fan-out$`, 'm'));
      assert.match(out, new RegExp(`KINESIS_ENDPOINT=${kinesisEndpoint} DYNAMODB_ENDPOINT=${dynamoDbEndpoint}`));
      assert.ok(existsSync(join(logDir!, 'temporal.log')), `no temporal.log in ${logDir}`);

      // The Web UI serves its page.
      const response = await fetch(uiUrl);
      const html = await response.text();
      assert.equal(response.status, 200);
      assert.match(response.headers.get('content-type') ?? '', /text\/html/);
      // The UI is a SvelteKit app: its page is a shell that loads the app's modules, which the UI serves too.
      assert.match(html, /<div id="svelte">/);
      const entry = outputLine(html, /href="(\/_app\/immutable\/entry\/start\.[^"]+\.js)"/)[1];
      const script = await fetch(new URL(entry ?? '', uiUrl));
      assert.equal(script.status, 200, entry);
      assert.match(script.headers.get('content-type') ?? '', /javascript/);
      // And the UI server reaches this Temporal: its API lists the namespace.
      // (Its gRPC client may have dialled before the frontend listened; it redials with backoff, so ask a few times.)
      type Namespaces = { namespaces?: { namespaceInfo?: { name?: string } }[] };
      const listNamespaces = async () =>
        (await (await fetch(new URL('/api/v1/namespaces', uiUrl))).json()) as Namespaces;
      let namespaces = await listNamespaces();
      for (let tries = 0; !namespaces.namespaces && tries < 30; tries++) {
        await sleep(500);
        namespaces = await listNamespaces();
      }
      assert.ok(
        namespaces.namespaces?.some((ns) => ns.namespaceInfo?.name === namespace),
        JSON.stringify(namespaces).slice(0, 500),
      );

      // Temporal answers on its gRPC port; the emulators answer through the project's clients, and are fresh ones
      // (no streams, no tables), not some other stack.
      const connection = await Connection.connect({ address: temporalAddress });
      try {
        const described = await connection.workflowService.describeNamespace({ namespace: namespace });
        assert.equal(described.namespaceInfo?.name, namespace);
      } finally {
        await connection.close();
      }
      const aws = { region: 'us-east-1', credentials: EMULATOR_CREDENTIALS, maxAttempts: 1 };
      const kinesis = createKinesisClient({ ...aws, kinesisEndpoint: kinesisEndpoint });
      const fanOut = createKinesisClient({ ...aws, kinesisEndpoint: fanOutEndpoint });
      const dynamoDb = createDynamoDbClient({ ...aws, dynamoDbEndpoint: dynamoDbEndpoint });
      try {
        assert.deepEqual((await kinesis.send(new ListStreamsCommand({}))).StreamNames, []);
        // The fan-out front forwards everything but SubscribeToShard to this kinesis-local (test/smoke/fan-out-server).
        assert.deepEqual((await fanOut.send(new ListStreamsCommand({}))).StreamNames, []);
        assert.deepEqual((await dynamoDb.send(new ListTablesCommand({}))).TableNames, []);
      } finally {
        kinesis.destroy();
        fanOut.destroy();
        dynamoDb.destroy();
      }

      // The servers it started are its own child processes.
      servers = descendants(dev.pid);
      const temporal = servers.filter((server) => server.command.includes('start-dev'));
      const kinesisLocal = servers.filter((server) => server.command.includes('kinesis-local'));
      assert.equal(temporal.length, 1, `temporal among ${JSON.stringify(servers)}`);
      assert.equal(kinesisLocal.length, 1, `kinesis-local among ${JSON.stringify(servers)}`);
      assert.ok(temporal[0]!.command.includes(`--port ${temporalPort}`), temporal[0]!.command);

      // Act: Ctrl-C.
      const stopping = Date.now();
      const exit = await Promise.race([
        dev.kill('SIGINT'),
        sleep(60_000).then(() => ({ code: null, signal: 'timed out after 60 s' as const })),
      ]);
      const stopMs = Date.now() - stopping;
      console.log(
        `temporal-kcl dev: ready in ${readyMs} ms, stopped in ${stopMs} ms; servers ${JSON.stringify(servers)}`,
      );

      // Assess: a clean exit, no server left, no port still listening.
      assert.deepEqual(exit, { code: 0, signal: null }, dev.stderr());
      assert.match(dev.stderr(), /SIGINT: stopping the local stack/);
      assert.match(dev.stderr(), /stopped\./);
      assert.deepEqual(
        servers.filter((server) => alive(server.pid)),
        [],
        'servers still running after temporal-kcl dev exited',
      );
      const fanOutPort = Number(new URL(fanOutEndpoint ?? '').port);
      for (const port of [temporalPort, uiPort, kinesisPort, fanOutPort, dynamoDbPort]) {
        assert.equal(await canConnect(port), false, `port ${port} still accepts connections`);
      }
    } finally {
      // A failed assertion or stop must not leave this test's servers behind (SIGKILL skips the CLI's own clean-up).
      if (servers.length === 0) servers = descendants(dev.pid);
      await dev.kill('SIGKILL');
      for (const server of servers) if (alive(server.pid)) process.kill(server.pid, 'SIGKILL');
      if (logDir) rmSync(logDir, { recursive: true, force: true });
    }
  });
});

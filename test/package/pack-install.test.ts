/**
 * The published package: `npm pack`, installed offline from the npm cache into an empty directory, holds only runtime
 * dependencies, exports a deliberate API, prints its version, and runs a worker (with a TypeScript processor) that
 * consumes a stream of the test stack.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { streamConsumerWorkflowId } from '../../src/ids';
import { createStream, kclTestContext, type KclTestContext, putRecords } from '../helpers/kcl';
import { installOffline, packTarball, tarballFiles } from '../helpers/offline-install';
import { uniqueName } from '../helpers/stack';

const root = join(__dirname, '..', '..');
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };

describe('the npm package', () => {
  let context: KclTestContext;
  let dir: string;
  let app: string;
  let files: string[];
  const cli = () => join(app, 'node_modules', '.bin', 'temporal-kcl');
  const children: number[] = [];

  before(async () => {
    context = await kclTestContext();
    dir = mkdtempSync(join(tmpdir(), 'kcl-pack-'));
    const tarball = packTarball(dir);
    files = tarballFiles(tarball);
    app = join(dir, 'app');
    installOffline(tarball, app);
  });
  after(async () => {
    for (const pid of children) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await context.close();
  });

  /** The environment of the installed CLI: the test stack, nothing inherited from temporal-kcl's own settings. */
  const env = (extra: Record<string, string> = {}) => {
    const base = Object.fromEntries(
      Object.entries(process.env).filter(([name]) => !/^(AWS_|TEMPORAL_|KINESIS_|DYNAMODB_)/.test(name)),
    );
    return {
      ...base,
      TEMPORAL_ADDRESS: context.stack.temporalAddress,
      TEMPORAL_NAMESPACE: context.stack.namespace,
      AWS_REGION: context.stack.aws.region,
      KINESIS_ENDPOINT: context.stack.aws.kinesisEndpoint,
      DYNAMODB_ENDPOINT: context.stack.aws.dynamoDbEndpoint,
      AWS_ACCESS_KEY_ID: 'local',
      AWS_SECRET_ACCESS_KEY: 'local',
      NODE_NO_WARNINGS: '1',
      ...extra,
    };
  };

  test('the tarball holds the build, the workflow bundle and the README, not sources or tests', () => {
    for (const file of [
      'package.json',
      'README.md',
      'dist/index.js',
      'dist/cli/main.js',
      'dist/workflow-bundle.js',
      'dist/dev/index.js',
    ]) {
      assert.ok(files.includes(file), `${file} is packed`);
    }
    assert.deepEqual(
      files.filter((file) => /^(src|test|bench|scripts)\//.test(file) || /\.test\.js$/.test(file)),
      [],
    );
  });

  test('installed offline: runtime dependencies only, --version, and the exports map', () => {
    for (const devOnly of ['@temporalio/testing', 'dynalite', 'kinesis-local', 'kinesalite', 'typescript', 'eslint']) {
      assert.ok(!existsSync(join(app, 'node_modules', devOnly)), `${devOnly} is not installed with temporal-kcl`);
    }
    assert.equal(execFileSync(cli(), ['--version'], { env: env(), encoding: 'utf8' }).trim(), version);

    const probe = `
      const kcl = require('temporal-kcl');
      const dev = require('temporal-kcl/dev');
      const out = {
        main: ['createKclWorker', 'startStreamConsumer', 'getStreamProgress', 'validateShardConsumerOptions', 'connectWorker', 'resolveTemporalConnection']
          .filter((name) => typeof kcl[name] !== 'function'),
        internals: ['CheckpointTable', 'shardConsumerOptionsSchema', 'startDevStack'].filter((name) => name in kcl),
        dev: typeof dev.startDevStack,
        workflows: typeof require('temporal-kcl/workflows').shardConsumerWorkflow,
      };
      try { require('temporal-kcl/dist/checkpoint/checkpoint-table'); out.deep = 'allowed'; } catch (e) { out.deep = e.code; }
      console.log(JSON.stringify(out));
    `;
    const result = JSON.parse(
      execFileSync(process.execPath, ['-e', probe], { cwd: app, env: env(), encoding: 'utf8' }),
    ) as unknown;
    assert.deepEqual(result, {
      main: [],
      internals: [],
      dev: 'function',
      workflows: 'function',
      deep: 'ERR_PACKAGE_PATH_NOT_EXPORTED',
    });
  });

  test('`temporal-kcl dev` from the installed package names the development dependencies it needs', () => {
    let failure: { status: number; stderr: string } | undefined;
    try {
      execFileSync(cli(), ['dev'], { env: env(), encoding: 'utf8', stdio: 'pipe' });
    } catch (error) {
      failure = error as { status: number; stderr: string };
    }
    assert.equal(failure?.status, 1);
    assert.match(failure?.stderr ?? '', /needs @temporalio\/testing, dynalite, kinesis-local .*npm install --save-dev/);
  });

  test('the installed CLI runs a worker with a TypeScript processor against the stack, and starts a consumer', async () => {
    const output = join(dir, 'records.txt');
    writeFileSync(output, '');
    writeFileSync(
      join(app, 'processor.ts'),
      [
        "import { appendFileSync } from 'node:fs';",
        "import type { RecordProcessorFactory } from 'temporal-kcl';",
        'const factory: RecordProcessorFactory = () => ({',
        '  initialize() {},',
        '  async processRecords({ records, checkpointer }) {',
        `    for (const record of records) appendFileSync(${JSON.stringify(output)}, Buffer.from(record.data).toString() + '\\n');`,
        '    await checkpointer.checkpoint();',
        '  },',
        '  shutdown() {},',
        '});',
        'export default factory;',
      ].join('\n'),
    );
    const taskQueue = uniqueName('pack-tq');
    const worker = spawn(cli(), ['worker', '--processor', './processor.ts'], {
      cwd: app,
      env: env({ TEMPORAL_KCL_TASK_QUEUE: taskQueue }),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    children.push(worker.pid!);
    let log = '';
    worker.stdout.on('data', (chunk: Buffer) => (log += chunk.toString()));
    worker.stderr.on('data', (chunk: Buffer) => (log += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => worker.on('exit', (code) => resolve(code)));
    const deadline = Date.now() + 60_000;
    while (!/worker .* ready/.test(log)) {
      assert.ok(Date.now() < deadline && worker.exitCode === null, `worker did not get ready:\n${log}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }

    const streamName = await createStream(context.kinesis, 1, 'pack');
    const applicationName = uniqueName('pack-app');
    execFileSync(
      cli(),
      ['start', '--app', applicationName, '--stream', streamName, '--initial-position', 'TRIM_HORIZON'],
      {
        cwd: app,
        env: env({ TEMPORAL_KCL_TASK_QUEUE: taskQueue }),
        stdio: 'pipe',
      },
    );
    await putRecords(
      context.kinesis,
      streamName,
      Array.from({ length: 5 }, (_, i) => ({ partitionKey: 'pk', data: `packed-${i}` })),
    );
    const until = Date.now() + 60_000;
    while (readFileSync(output, 'utf8').split('\n').filter(Boolean).length < 5 && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    assert.deepEqual(
      readFileSync(output, 'utf8').split('\n').filter(Boolean),
      [0, 1, 2, 3, 4].map((i) => `packed-${i}`),
      log,
    );

    await context.client.workflow
      .getHandle(streamConsumerWorkflowId(applicationName, streamName))
      .terminate('test done');
    process.kill(-worker.pid!, 'SIGTERM');
    const code = await exited;
    assert.equal(code, 0, log);
    assert.throws(() => process.kill(-worker.pid!, 0), /ESRCH/, 'the worker process group is gone');
  });
});

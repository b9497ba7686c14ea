/**
 * `npm test`'s runner: provisions the tools, starts one shared local stack (Temporal dev server with UI, kinesis-local,
 * dynalite), runs every test file with node's built-in runner, and tears everything down, also when a test fails or the
 * run is interrupted. Tests find the stack through TEMPORAL_KCL_TEST_* environment variables.
 *
 * Usage: tsx scripts/run-tests.ts [file or directory ...]   (default: test/, without test/cluster/: that suite needs a
 * real Temporal cluster and runs with `npm run test:cluster`)
 *
 * Every test file runs under the default execution (per-batch); the suites that start consumers (integration,
 * reliability, CLI) then run a second time under `execution: 'windowed'` (TEMPORAL_KCL_TEST_EXECUTION, read by
 * test/helpers/execution.ts). Setting TEMPORAL_KCL_TEST_EXECUTION yourself runs the files once, under that execution.
 */
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { startDevStack } from '../src/dev/dev-stack';
import { provisionTools } from './provision';

const root = resolve(__dirname, '..');

/** The suites that start consumers: run once per execution. */
const PER_EXECUTION = /^test\/(integration|reliability|cli)\//;
/**
 * The suites run a third time with enhanced fan-out (`retrieval: 'fan-out'`, windowed): failover and crashes, stop,
 * resharding, HALT and dead-letter, the CLI's workers; each file as it is, through the stack's fan-out front.
 */
const FAN_OUT = [
  'test/integration/shard-consumer-reshard.test.ts',
  'test/reliability/crash-suite.test.ts',
  'test/reliability/processor-failures.test.ts',
  'test/cli/cli-consumer.test.ts',
  'test/cli/cli-workers.test.ts',
];
/** CLI tests that start no consumer. */
const NO_CONSUMER = /^test\/cli\/cli-(dev|errors)\.test\.ts$/;

/** Suites with runners of their own: left out when a directory above them is run, run only when named. */
const OWN_RUNNER = new Set(['test/cluster']);

function testFiles(targets: string[]): string[] {
  const files: string[] = [];
  const visit = (path: string, named = false) => {
    if (!named && OWN_RUNNER.has(relative(root, path))) return;
    if (statSync(path).isDirectory()) {
      for (const entry of readdirSync(path).sort()) visit(join(path, entry));
    } else if (/\.test\.ts$/.test(path)) {
      files.push(relative(root, path));
    }
  };
  for (const target of targets.length > 0 ? targets : ['test']) visit(resolve(root, target), true);
  return files;
}

async function main(): Promise<number> {
  const files = testFiles(process.argv.slice(2));
  const { temporalCli, testServer } = await provisionTools(undefined, { cluster: false });
  const stackStarted = Date.now();
  const stack = await startDevStack({
    log: (line) => console.log(`[stack] ${line}`),
    // Subscriptions renewed every 10 s instead of AWS's 5 minutes: the fan-out pass renews them many times.
    kinesis: { fanOut: { subscriptionMs: 10_000 } },
  });
  console.log(`[stack] ready in ${Date.now() - stackStarted} ms; logs in ${stack.logDir}`);

  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TEMPORAL_KCL_TEST_TEMPORAL_ADDRESS: stack.temporal.address,
    TEMPORAL_KCL_TEST_TEMPORAL_NAMESPACE: stack.temporal.namespace,
    TEMPORAL_KCL_TEST_TEMPORAL_UI_URL: stack.temporal.uiUrl ?? '',
    TEMPORAL_KCL_TEST_KINESIS_ENDPOINT: stack.kinesisEndpoint,
    TEMPORAL_KCL_TEST_KINESIS_FANOUT_ENDPOINT: stack.kinesisFanOutEndpoint ?? '',
    TEMPORAL_KCL_TEST_DYNAMODB_ENDPOINT: stack.dynamoDbEndpoint,
    ...(temporalCli.path ? { TEMPORAL_CLI_PATH: temporalCli.path } : {}),
    ...(testServer.path ? { TEMPORAL_TEST_SERVER_PATH: testServer.path } : {}),
  };
  const passes: { execution?: string; retrieval?: string; files: string[] }[] = process.env.TEMPORAL_KCL_TEST_EXECUTION
    ? [{ files }]
    : [
        { execution: 'per-batch', files },
        {
          execution: 'windowed',
          files: files.filter((file) => PER_EXECUTION.test(file) && !NO_CONSUMER.test(file)),
        },
        { execution: 'windowed', retrieval: 'fan-out', files: files.filter((file) => FAN_OUT.includes(file)) },
      ];
  let code = 0;
  let interrupted = false;
  let running: ReturnType<typeof spawn> | undefined;
  const killGroup = () => {
    try {
      if (running?.pid) process.kill(-running.pid, 'SIGKILL');
    } catch {
      // the group is already gone
    }
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      interrupted = true;
      killGroup();
    });
  }
  for (const pass of passes) {
    if (pass.files.length === 0 || interrupted) continue;
    if (pass.execution) {
      console.log(
        `\n[tests] ${pass.files.length} file(s) with execution ${pass.execution}${pass.retrieval ? `, retrieval ${pass.retrieval}` : ''}`,
      );
    }
    const args = [
      '--import',
      'tsx',
      '--test',
      '--test-reporter=spec',
      `--test-concurrency=${process.env.TEST_CONCURRENCY ?? '1'}`,
      '--test-timeout=600000',
      ...pass.files,
    ];
    // The test run gets a process group of its own, so that whatever it starts (servers the SDK spawns, workers in
    // child processes) can be killed as a group, even if a test leaves something behind.
    const child = spawn(process.execPath, args, {
      cwd: root,
      env: {
        ...env,
        ...(pass.execution ? { TEMPORAL_KCL_TEST_EXECUTION: pass.execution } : {}),
        ...(pass.retrieval ? { TEMPORAL_KCL_TEST_RETRIEVAL: pass.retrieval } : {}),
      },
      stdio: 'inherit',
      detached: true,
    });
    running = child;
    const subscriptionsBefore = stack.kinesisFanOutStats?.().subscriptions ?? 0;
    const passCode = await new Promise<number>((done) => child.on('exit', (exitCode) => done(exitCode ?? 1)));
    killGroup();
    if (passCode !== 0) code = passCode;
    if (pass.retrieval === 'fan-out' && !interrupted) {
      // The pass must really have read through push streams, not fallen back to anything else.
      const stats = stack.kinesisFanOutStats?.();
      const subscriptions = (stats?.subscriptions ?? 0) - subscriptionsBefore;
      console.log(`[tests] fan-out pass: ${subscriptions} SubscribeToShard calls served, ${JSON.stringify(stats)}`);
      if (subscriptions === 0) {
        console.error('[tests] the fan-out pass made no SubscribeToShard call: its consumers did not read by fan-out');
        code = 1;
      }
    }
  }
  await stack.stop();
  return interrupted ? 130 : code;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);

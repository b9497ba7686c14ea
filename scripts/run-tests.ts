/**
 * `npm test`'s runner: provisions the tools, starts one shared local stack (Temporal dev server with UI, kinesis-local,
 * dynalite), runs every test file with node's built-in runner, and tears everything down, also when a test fails or the
 * run is interrupted. Tests find the stack through TEMPORAL_KCL_TEST_* environment variables.
 *
 * Usage: tsx scripts/run-tests.ts [file or directory ...]   (default: test/)
 */
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { startDevStack } from '../src/dev/dev-stack';
import { provisionTools } from './provision';

const root = resolve(__dirname, '..');

function testFiles(targets: string[]): string[] {
  const files: string[] = [];
  const visit = (path: string) => {
    if (statSync(path).isDirectory()) {
      for (const entry of readdirSync(path).sort()) visit(join(path, entry));
    } else if (/\.test\.ts$/.test(path)) {
      files.push(relative(root, path));
    }
  };
  for (const target of targets.length > 0 ? targets : ['test']) visit(resolve(root, target));
  return files;
}

async function main(): Promise<number> {
  const files = testFiles(process.argv.slice(2));
  const { temporalCli, testServer } = await provisionTools();
  const stackStarted = Date.now();
  const stack = await startDevStack({ log: (line) => console.log(`[stack] ${line}`) });
  console.log(`[stack] ready in ${Date.now() - stackStarted} ms; logs in ${stack.logDir}`);

  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TEMPORAL_KCL_TEST_TEMPORAL_ADDRESS: stack.temporal.address,
    TEMPORAL_KCL_TEST_TEMPORAL_NAMESPACE: stack.temporal.namespace,
    TEMPORAL_KCL_TEST_TEMPORAL_UI_URL: stack.temporal.uiUrl ?? '',
    TEMPORAL_KCL_TEST_KINESIS_ENDPOINT: stack.kinesisEndpoint,
    TEMPORAL_KCL_TEST_DYNAMODB_ENDPOINT: stack.dynamoDbEndpoint,
    ...(temporalCli.path ? { TEMPORAL_CLI_PATH: temporalCli.path } : {}),
    ...(testServer.path ? { TEMPORAL_TEST_SERVER_PATH: testServer.path } : {}),
  };
  const args = [
    '--import',
    'tsx',
    '--test',
    '--test-reporter=spec',
    `--test-concurrency=${process.env.TEST_CONCURRENCY ?? '1'}`,
    '--test-timeout=600000',
    ...files,
  ];
  // The test run gets a process group of its own, so that whatever it starts (servers the SDK spawns, workers in child
  // processes) can be killed as a group, even if a test leaves something behind.
  const child = spawn(process.execPath, args, { cwd: root, env, stdio: 'inherit', detached: true });
  const killGroup = () => {
    try {
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // the group is already gone
    }
  };
  let interrupted = false;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      interrupted = true;
      killGroup();
    });
  }
  const code = await new Promise<number>((done) => child.on('exit', (exitCode) => done(exitCode ?? 1)));
  killGroup();
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

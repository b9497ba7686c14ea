/**
 * Runs the `temporal-kcl` CLI from source (`node --import tsx src/cli/main.ts`) as a subprocess, pointed at the test
 * stack through the environment variables users set. Each subprocess leads a process group of its own; every one is
 * SIGKILLed (its whole group) by {@link killAllCliProcesses}, and at the latest when the test process exits, so none
 * outlives its test.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { testExecution, testRetrieval } from './execution';
import { signalGroup, untilGroupGone } from './process-group';
import type { TestStack } from './stack';

const root = resolve(__dirname, '..', '..');
const main = join(root, 'src', 'cli', 'main.ts');
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/** The variables the CLI reads; a test's environment must not leak any of them into a subprocess. */
const CLI_VARIABLES = [
  'TEMPORAL_ADDRESS',
  'TEMPORAL_NAMESPACE',
  'TEMPORAL_API_KEY',
  'TEMPORAL_PROFILE',
  'TEMPORAL_CONFIG_FILE',
  'TEMPORAL_TLS',
  'TEMPORAL_TLS_SERVER_CA_CERT_PATH',
  'TEMPORAL_TLS_CLIENT_CERT_PATH',
  'TEMPORAL_TLS_CLIENT_KEY_PATH',
  'TEMPORAL_TLS_SERVER_NAME',
  'TEMPORAL_KCL_TASK_QUEUE',
  'TEMPORAL_KCL_METRICS_PORT',
  'TEMPORAL_KCL_MAX_SHARDS',
  'TEMPORAL_KCL_CODEC_KEY',
  'AWS_REGION',
  'AWS_PROFILE',
  'AWS_SESSION_TOKEN',
  'KINESIS_ENDPOINT',
  'DYNAMODB_ENDPOINT',
];

/** The environment that points the CLI at the test stack (emulators accept any credentials). */
export function cliEnvironment(stack: TestStack, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of CLI_VARIABLES) delete env[name];
  return {
    ...env,
    TEMPORAL_ADDRESS: stack.temporalAddress,
    TEMPORAL_NAMESPACE: stack.namespace,
    AWS_REGION: stack.aws.region,
    KINESIS_ENDPOINT: stack.aws.kinesisEndpoint,
    DYNAMODB_ENDPOINT: stack.aws.dynamoDbEndpoint,
    AWS_ACCESS_KEY_ID: 'local',
    AWS_SECRET_ACCESS_KEY: 'local',
    // The AWS SDK's Node-version notice would otherwise open every stderr.
    NODE_NO_WARNINGS: '1',
    ...extra,
  };
}

export interface CliProcess {
  readonly pid: number;
  /** Resolves once the process has exited: its exit code, or the signal that ended it. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stdout(): string;
  stderr(): string;
  /** Resolves when stdout or stderr matches; rejects on timeout or if the process exits first. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  /**
   * Sends a signal (if still running) and waits for the exit, and until nothing of its process group is left (throws
   * if something is, after SIGKILLing it). SIGKILL goes to the whole group; other signals to the CLI itself, whose
   * handling of them is under test (it must stop what it started).
   */
  kill(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `temporal-kcl <args>` and returns at once. */
export function spawnCli(args: string[], env: NodeJS.ProcessEnv): CliProcess {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const child of live) signalGroup(child, 'SIGKILL');
    });
  }
  const child = spawn(process.execPath, ['--import', 'tsx', main, ...args], {
    cwd: root,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    // A process group of its own: SIGKILL reaches whatever it started (a dev stack's servers) too.
    detached: true,
  });
  live.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolveExit) => {
    child.once('close', (code, signal) => {
      live.delete(child);
      resolveExit({ code, signal });
    });
  });
  let done = false;
  void exited.then(() => (done = true));
  return {
    pid: child.pid ?? -1,
    exited,
    stdout: () => stdout,
    stderr: () => stderr,
    async waitFor(pattern, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const match = pattern.exec(stdout) ?? pattern.exec(stderr);
        if (match) return match;
        if (done) throw new Error(`temporal-kcl ${args.join(' ')} exited before printing ${pattern}:\n${stderr}`);
        if (Date.now() > deadline)
          throw new Error(`temporal-kcl ${args.join(' ')}: no ${pattern} within ${timeoutMs} ms:\n${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async kill(signal = 'SIGTERM') {
      if (!done) {
        if (signal === 'SIGKILL') signalGroup(child, signal);
        else child.kill(signal);
      }
      const how = await exited;
      await untilGroupGone(child.pid ?? -1, `temporal-kcl ${args.join(' ')}`);
      return how;
    },
  };
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  durationMs: number;
}

/** Runs `temporal-kcl <args>` to completion (SIGKILLed after `timeoutMs`, which then shows as its signal). */
export async function runCli(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 60_000): Promise<CliResult> {
  const started = Date.now();
  // `start` runs under the suite's execution (see execution.ts), unless the test chose one (or passes an options file).
  const execution = testExecution();
  const retrieval = testRetrieval();
  const starts = args[0] === 'start' && !args.includes('--options');
  const withExecution = [
    ...args,
    ...(starts && execution && !args.includes('--execution') ? ['--execution', execution] : []),
    ...(starts && retrieval && !args.includes('--retrieval') ? ['--retrieval', retrieval] : []),
  ];
  const cli = spawnCli(withExecution, env);
  const timer = setTimeout(() => void cli.kill('SIGKILL'), timeoutMs);
  try {
    const { code, signal } = await cli.exited;
    return { code, signal, stdout: cli.stdout(), stderr: cli.stderr(), durationMs: Date.now() - started };
  } finally {
    clearTimeout(timer);
  }
}

/** SIGKILLs every CLI subprocess still running (for `after` hooks and `finally` blocks). */
export async function killAllCliProcesses(): Promise<void> {
  await Promise.all(
    [...live].map(
      (child) =>
        new Promise<void>((resolveExit) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolveExit();
          child.once('close', () => resolveExit());
          signalGroup(child, 'SIGKILL');
        }),
    ),
  );
}

/** The first match of `pattern` in a command's output; fails the test, showing the output, when there is none. */
export function outputLine(output: string, pattern: RegExp): RegExpExecArray {
  const match = pattern.exec(output);
  assert.ok(match, `no line matching ${pattern} in:\n${output}`);
  return match;
}

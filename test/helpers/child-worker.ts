/**
 * temporal-kcl workers in child processes (test/fixtures/worker-process.ts), for tests that kill a worker process.
 * Each child leads a process group of its own, and signals go to the group (whatever it started dies with it).
 * Every child is killed when the test calls {@link killAllWorkerProcesses}, and at the latest when this process exits.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import type { WorkerProcessConfig, WorkerProcessLine } from '../fixtures/worker-process';
import { readJsonLines } from './json-lines';
import type { KclTestContext } from './kcl';
import { liveGroupMembers, signalGroup } from './process-group';

const root = resolve(__dirname, '..', '..');
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

export interface WorkerProcess {
  readonly pid: number;
  /** The worker's own task queue (where the shards pinned to it send their reads and batches). */
  readonly workerQueue: string;
  readonly outputFile: string;
  /** Resolves with the exit code or signal once the process has exited. */
  readonly exited: Promise<number | NodeJS.Signals | null>;
  /** Every line the processor wrote so far. */
  lines(): WorkerProcessLine[];
  /** The records the processor wrote so far. */
  records(): Extract<WorkerProcessLine, { kind: 'record' }>[];
  /** Resolves when `predicate` holds on the lines written (polled). */
  until(predicate: (lines: WorkerProcessLine[]) => boolean, timeoutMs?: number): Promise<void>;
  /** Sends a signal to the process group and waits for the process to exit. */
  kill(signal: NodeJS.Signals): Promise<void>;
  /** True once no process of the group is left running (zombies awaiting their reaper do not count). */
  gone(): boolean;
  /** What the process printed on stderr (for failure messages). */
  stderr(): string;
}

/**
 * Starts a worker process against the test stack and waits for its `ready` line.
 */
export async function startWorkerProcess(
  context: KclTestContext,
  options: Pick<WorkerProcessConfig, 'taskQueue' | 'outputFile' | 'checkpoint'> &
    Partial<Omit<WorkerProcessConfig, 'taskQueue' | 'outputFile' | 'checkpoint'>>,
  readyTimeoutMs = 60_000,
): Promise<WorkerProcess> {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const child of live) signalGroup(child, 'SIGKILL');
    });
  }
  const config: WorkerProcessConfig = {
    temporalAddress: context.stack.temporalAddress,
    namespace: context.stack.namespace,
    kinesisEndpoint: context.stack.aws.kinesisEndpoint,
    dynamoDbEndpoint: context.stack.aws.dynamoDbEndpoint,
    exitOnStdinEnd: true,
    ...options,
  };
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(root, 'test', 'fixtures', 'worker-process.ts'), JSON.stringify(config)],
    { cwd: root, stdio: ['pipe', 'pipe', 'pipe'], detached: true },
  );
  live.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | NodeJS.Signals | null>((resolveExit) => {
    child.once('exit', (code, signal) => {
      live.delete(child);
      resolveExit(signal ?? code);
    });
  });

  const workerQueue = await new Promise<string>((resolveReady, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`worker process not ready within ${readyTimeoutMs} ms:\n${stderr}`));
    }, readyTimeoutMs);
    const onData = () => {
      const match = /^ready (\S+)$/m.exec(stdout);
      if (!match?.[1]) return;
      clearTimeout(timer);
      child.stdout.off('data', onData);
      resolveReady(match[1]);
    };
    child.stdout.on('data', onData);
    void exited.then((how) => {
      clearTimeout(timer);
      reject(new Error(`worker process exited (${String(how)}) before it was ready:\n${stderr}`));
    });
  });

  const lines = (): WorkerProcessLine[] => readJsonLines<WorkerProcessLine>(config.outputFile);

  return {
    pid: child.pid ?? -1,
    workerQueue,
    outputFile: config.outputFile,
    exited,
    lines,
    records: () => lines().filter((line) => line.kind === 'record'),
    async until(predicate, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      while (!predicate(lines())) {
        if (Date.now() > deadline) {
          throw new Error(
            `worker process ${child.pid}: condition not met within ${timeoutMs} ms; ${lines().length} lines written\n${stderr}`,
          );
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async kill(signal) {
      if (live.has(child)) signalGroup(child, signal);
      await exited;
    },
    gone() {
      return liveGroupMembers(child.pid ?? -1).length === 0;
    },
    stderr: () => stderr,
  };
}

/** SIGKILLs every worker process still running (for `after` hooks and `finally` blocks). */
export async function killAllWorkerProcesses(): Promise<void> {
  const children = [...live];
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((resolveExit) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolveExit();
          child.once('exit', () => resolveExit());
          signalGroup(child, 'SIGKILL');
        }),
    ),
  );
}

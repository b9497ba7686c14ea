/**
 * `temporal-kcl worker` (and other CLI commands) in child processes, run from source as a user runs the CLI, with
 * test/fixtures/file-recording-processor.ts as the processor module. Each child leads a process group of its own; every
 * child is killed by {@link CliProcess.stop}, and at the latest when this process exits (its whole group).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { type RecordedLine, RECORDS_FILE_VARIABLE } from '../fixtures/file-recording-processor';
import { readJsonLines } from './json-lines';
import { signalGroup, untilGroupGone } from './process-group';

const root = resolve(__dirname, '..', '..');
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Variables of the test process that must not leak into a child's settings (it gets exactly what the test gives). */
const INHERITED_SETTINGS =
  /^(AWS_|KINESIS_ENDPOINT$|DYNAMODB_ENDPOINT$|TEMPORAL_ADDRESS$|TEMPORAL_NAMESPACE$|TEMPORAL_KCL_(?!TEST_))/;

export interface CliProcess {
  readonly pid: number;
  readonly exited: Promise<number | NodeJS.Signals | null>;
  /** Everything the process printed so far, stdout and stderr interleaved as received. */
  output(): string;
  /** Waits until the output matches. */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  /**
   * SIGTERM, then SIGKILL (to its process group) if it has not exited within `graceMs`; resolves once it has exited
   * and nothing of its group is left (throws if something is, after SIGKILLing it).
   */
  stop(graceMs?: number): Promise<number | NodeJS.Signals | null>;
}

/** Runs `node --import tsx src/cli/main.ts <args>` with exactly the given temporal-kcl settings in its environment. */
export function startCli(args: string[], env: Record<string, string>): CliProcess {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const child of live) signalGroup(child, 'SIGKILL');
    });
  }
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([name]) => !INHERITED_SETTINGS.test(name)));
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'src', 'cli', 'main.ts'), ...args], {
    cwd: root,
    env: { ...inherited, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    // A process group of its own: SIGKILL reaches whatever it started too.
    detached: true,
  });
  live.add(child);
  let output = '';
  const waiters = new Set<() => void>();
  const onData = (chunk: string) => {
    output += chunk;
    for (const waiter of waiters) waiter();
  };
  child.stdout?.setEncoding('utf8').on('data', onData);
  child.stderr?.setEncoding('utf8').on('data', onData);
  const exited = new Promise<number | NodeJS.Signals | null>((resolveExit) => {
    child.once('exit', (code, signal) => {
      live.delete(child);
      for (const waiter of waiters) waiter();
      resolveExit(signal ?? code);
    });
  });
  return {
    pid: child.pid ?? -1,
    exited,
    output: () => output,
    waitForOutput(pattern, timeoutMs = 90_000) {
      return new Promise((resolveMatch, reject) => {
        const check = () => {
          const match = pattern.exec(output);
          if (match) {
            done();
            resolveMatch(match);
          } else if (!live.has(child)) {
            done();
            reject(new Error(`process ${child.pid} exited before printing ${pattern}:\n${output}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`process ${child.pid} did not print ${pattern} within ${timeoutMs} ms:\n${output}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    async stop(graceMs = 10_000) {
      if (live.has(child)) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => signalGroup(child, 'SIGKILL'), graceMs);
        try {
          await exited;
        } finally {
          clearTimeout(timer);
        }
      }
      const how = await exited;
      await untilGroupGone(child.pid ?? -1, `temporal-kcl ${args.join(' ')}`);
      return how;
    },
  };
}

export interface CliWorker extends CliProcess {
  /** Lines the processor wrote to its file so far. */
  lines(): RecordedLine[];
  records(): Extract<RecordedLine, { kind: 'record' }>[];
  /** Resolves when `predicate` holds on the lines written (polled). */
  until(predicate: (lines: RecordedLine[]) => boolean, timeoutMs?: number): Promise<void>;
}

/**
 * Starts `temporal-kcl worker --processor test/fixtures/file-recording-processor.ts [extra args]` and waits until it says
 * it is ready. `env` holds its settings (TEMPORAL_ADDRESS, KINESIS_ENDPOINT, AWS credentials, ...).
 */
export async function startCliWorker(options: {
  recordsFile: string;
  env: Record<string, string>;
  args?: string[];
  readyTimeoutMs?: number;
}): Promise<CliWorker> {
  const processor = join(root, 'test', 'fixtures', 'file-recording-processor.ts');
  const cli = startCli(['worker', '--processor', processor, ...(options.args ?? [])], {
    ...options.env,
    [RECORDS_FILE_VARIABLE]: options.recordsFile,
  });
  try {
    await cli.waitForOutput(/temporal-kcl worker \S+ ready/, options.readyTimeoutMs ?? 120_000);
  } catch (error) {
    await cli.stop(0);
    throw error;
  }
  const lines = (): RecordedLine[] => readJsonLines<RecordedLine>(options.recordsFile);
  return {
    ...cli,
    lines,
    records: () => lines().filter((line) => line.kind === 'record'),
    async until(predicate, timeoutMs = 120_000) {
      const deadline = Date.now() + timeoutMs;
      let exited = false;
      void cli.exited.then(() => (exited = true));
      while (!predicate(lines())) {
        if (exited || Date.now() > deadline) {
          throw new Error(
            `worker ${cli.pid}: condition not met ${exited ? 'before it exited' : `within ${timeoutMs} ms`}; ` +
              `${lines().length} lines written\n${cli.output().slice(-5_000)}`,
          );
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    },
  };
}

/** One sample of a Prometheus text exposition. */
export interface MetricSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the Prometheus text format (enough of it for counters, gauges and histograms). */
export function parsePrometheus(text: string): MetricSample[] {
  const samples: MetricSample[] = [];
  for (const line of text.split('\n')) {
    if (line.length === 0 || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match?.[1] || match[3] === undefined) continue;
    const labels: Record<string, string> = {};
    for (const label of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      if (label[1] !== undefined) labels[label[1]] = (label[2] ?? '').replace(/\\(.)/g, '$1');
    }
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

/** GETs /metrics from a worker's Prometheus endpoint. */
export async function scrapeMetrics(port: number): Promise<{ text: string; samples: MetricSample[] }> {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`);
  if (!response.ok) throw new Error(`GET /metrics on port ${port}: HTTP ${response.status}`);
  const text = await response.text();
  return { text, samples: parsePrometheus(text) };
}

/**
 * `temporal-kcl worker` run as a user runs it, in a process group of its own, for the measurements that time the CLI
 * itself (start-up): from source (`node --import tsx src/cli/main.ts worker --processor <a .ts processor>`) or compiled
 * as the package and the image run it (`node dist/cli/main.js worker --processor <a .js processor>`, after
 * `npm run build`). Killed with the other children by killAllChildren.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { RECORDS_FILE_VARIABLE } from '../../test/fixtures/file-recording-processor';
import { killGroup, stopGroup, trackChild } from './children';
import type { StackEndpoints } from './protocol';

const root = resolve(__dirname, '..', '..');

/** How the CLI runs: from the TypeScript source under tsx, or compiled (dist/, with its prebuilt workflow bundle). */
export type CliMode = 'source' | 'compiled';

/** The command line of `temporal-kcl worker` in a checkout (node's arguments). */
export function workerCommandLine(mode: CliMode, checkout: string = root): string[] {
  return mode === 'source'
    ? [
        '--import',
        'tsx',
        join(checkout, 'src', 'cli', 'main.ts'),
        'worker',
        '--processor',
        join(checkout, 'test', 'fixtures', 'file-recording-processor.ts'),
      ]
    : [
        join(checkout, 'dist', 'cli', 'main.js'),
        'worker',
        '--processor',
        join(checkout, 'dist', 'examples', 'logging-processor.js'),
      ];
}

/** Variables of the benchmark's environment that would change the worker's settings. */
const SETTINGS = /^(AWS_|KINESIS_ENDPOINT$|DYNAMODB_ENDPOINT$|TEMPORAL_)/;

export class CliWorkerChild {
  readonly child: ChildProcess;
  /** When the process was spawned (epoch ms). */
  readonly spawnedAt: number;
  readonly exited: Promise<number | NodeJS.Signals | null>;
  /** When the worker printed its `ready` line (epoch ms), once it has. */
  readyAt: number | undefined;
  private output = '';

  /**
   * Spawns the worker. `checkout`: the repository whose CLI runs (default this one; another checkout measures a
   * baseline, e.g. a worktree of main).
   */
  constructor(
    readonly name: string,
    endpoints: StackEndpoints,
    taskQueue: string,
    logDir: string,
    mode: CliMode = 'source',
    checkout: string = root,
  ) {
    const recordsDir = mkdtempSync(join(tmpdir(), 'temporal-kcl-bench-records-'));
    const inherited = Object.fromEntries(Object.entries(process.env).filter(([key]) => !SETTINGS.test(key)));
    this.spawnedAt = Date.now();
    this.child = spawn(process.execPath, workerCommandLine(mode, checkout), {
      cwd: checkout,
      env: {
        ...inherited,
        TEMPORAL_ADDRESS: endpoints.temporalAddress,
        TEMPORAL_NAMESPACE: endpoints.namespace,
        TEMPORAL_KCL_TASK_QUEUE: taskQueue,
        AWS_REGION: 'us-east-1',
        AWS_ACCESS_KEY_ID: 'local',
        AWS_SECRET_ACCESS_KEY: 'local',
        KINESIS_ENDPOINT: endpoints.kinesisEndpoint,
        DYNAMODB_ENDPOINT: endpoints.dynamoDbEndpoint,
        NODE_NO_WARNINGS: '1',
        [RECORDS_FILE_VARIABLE]: join(recordsDir, 'records.jsonl'),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      // A process group of its own: a kill reaches the whole group, and nothing of it outlives the kill.
      detached: true,
    });
    trackChild(this.child);
    const log = createWriteStream(join(logDir, `${name}.log`), { flags: 'a' });
    const onData = (chunk: Buffer) => {
      log.write(chunk);
      this.output = (this.output + chunk.toString('utf8')).slice(-8_000);
      if (this.readyAt === undefined && /temporal-kcl worker \S+ ready/.test(this.output)) this.readyAt = Date.now();
    };
    this.child.stdout?.on('data', onData);
    this.child.stderr?.on('data', onData);
    this.exited = new Promise((resolveExit) => {
      this.child.once('exit', (code, signal) => resolveExit(signal ?? code));
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The start of the identity the worker gives itself (`<hostname>-<pid>-<random>`, src/worker.ts). */
  get identityPrefix(): string {
    return `${hostname()}-${this.pid}-`;
  }

  /** The last lines it printed. */
  tail(): string {
    return this.output;
  }

  /** Signals the process group, waits for the exit, and checks nothing of the group is left. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await killGroup(this.child, this.exited, signal);
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the group is gone. */
  async stop(graceMs = 10_000): Promise<number | NodeJS.Signals | null> {
    await stopGroup(this.child, this.exited, graceMs);
    return this.exited;
  }
}

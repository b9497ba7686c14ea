/**
 * Child processes of the benchmark (temporal-kcl workers, the raw reader), with an IPC channel. Every child is killed
 * when the benchmark calls {@link killAllChildren}, and at the latest when the benchmark process exits (SIGKILL from an
 * exit hook); a child also exits by itself when its IPC channel closes.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type {
  EmulatorMessage,
  RawReaderMessage,
  RawReadRequest,
  RawReadResult,
  StackEndpoints,
  WorkerCallCounts,
  WorkerChildCommand,
  WorkerChildConfig,
  WorkerChildMessage,
} from './protocol';

const root = resolve(__dirname, '..', '..');
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of live) signalGroup(child, 'SIGKILL');
  });
}

/**
 * Signals a child's process group (children are spawned `detached`: each leads a group of its own, so a kill reaches
 * whatever it started too). False if the group is gone.
 */
export function signalGroup(child: ChildProcess, signal: NodeJS.Signals): boolean {
  if (child.pid === undefined) return false;
  try {
    process.kill(-child.pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** Waits until no process of the group led by `pid` is left (a killed process is really gone); throws after 5 s. */
const isAlive = (child: ChildProcess) => child.exitCode === null && child.signalCode === null;

/** Signals a child's process group, waits for the child's exit, and checks nothing of the group is left. */
export async function killGroup(child: ChildProcess, exited: Promise<unknown>, signal: NodeJS.Signals): Promise<void> {
  if (isAlive(child)) signalGroup(child, signal);
  await exited;
  await untilGroupGone(child.pid ?? -1);
}

/** SIGTERM, then SIGKILL after `graceMs`, to a child's process group; resolves once the whole group is gone. */
export async function stopGroup(child: ChildProcess, exited: Promise<unknown>, graceMs: number): Promise<void> {
  if (isAlive(child)) {
    signalGroup(child, 'SIGTERM');
    const timer = setTimeout(() => signalGroup(child, 'SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }
  // Whatever the process started dies with it.
  signalGroup(child, 'SIGKILL');
  await untilGroupGone(child.pid ?? -1);
}

export async function untilGroupGone(pid: number, timeoutMs = 5_000): Promise<void> {
  if (pid <= 0) return; // never spawned
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      process.kill(-pid, 0);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ESRCH') return;
      throw error;
    }
    if (Date.now() > deadline)
      throw new Error(`process group ${pid} still has processes ${timeoutMs} ms after its kill`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Keeps track of a child the benchmark spawned itself (detached), so that killAllChildren and the exit hook kill it. */
export function trackChild(child: ChildProcess): void {
  installExitHook();
  live.add(child);
  child.once('exit', () => live.delete(child));
}

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ; 100 on Linux x86-64 and arm64). */
const CLOCK_TICKS = 100;

/** CPU seconds (user + system) a live process has used so far, from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return (utime + stime) / CLOCK_TICKS;
}

/** Pids of this process's children whose command name (comm) is `name`, from /proc. */
export function childPidsNamed(name: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (comm === name && ppid === process.pid) pids.push(Number(entry));
    } catch {
      // the process went away meanwhile
    }
  }
  return pids;
}

/** Peak resident set size (VmHWM) of a live process, in MiB. */
export function peakRssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /^VmHWM:\s+(\d+) kB/m.exec(status);
  return match ? Number(match[1]) / 1024 : Number.NaN;
}

/** A child process running a TypeScript program under tsx, with an IPC channel. */
class BenchChild<In, Out extends { type: string }> {
  readonly child: ChildProcess;
  readonly exited: Promise<number | NodeJS.Signals | null>;
  private readonly listeners = new Set<(message: Out) => void>();
  private stderrTail = '';

  constructor(
    readonly name: string,
    script: string,
    argument: unknown,
    logDir: string,
  ) {
    installExitHook();
    // BENCH_CPU_PROF=<dir>: every child writes a V8 CPU profile there when it exits (SIGTERM, not SIGKILL).
    const profile = process.env.BENCH_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_CPU_PROF] : [];
    const args = [...profile, '--import', 'tsx', join(root, 'bench', script), JSON.stringify(argument)];
    this.child = spawn(process.execPath, args, {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      // The AWS SDK warns about Node 20 on every start; the benchmark's output does not need it.
      env: { ...process.env, NODE_NO_WARNINGS: '1' },
      // A process group of its own: a kill reaches the whole group, and nothing of it outlives the kill.
      detached: true,
    });
    live.add(this.child);
    const log = createWriteStream(join(logDir, `${name}.log`), { flags: 'a' });
    this.child.stdout?.pipe(log);
    this.child.stderr?.on('data', (chunk: Buffer) => {
      log.write(chunk);
      this.stderrTail = (this.stderrTail + chunk.toString('utf8')).slice(-4_000);
    });
    this.child.on('message', (message: Out) => {
      for (const listener of this.listeners) listener(message);
    });
    this.exited = new Promise((resolveExit) => {
      this.child.once('exit', (code, signal) => {
        live.delete(this.child);
        resolveExit(signal ?? code);
      });
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  get stderr(): string {
    return this.stderrTail;
  }

  /** Calls `listener` with every message; returns a function that stops it. */
  onMessage(listener: (message: Out) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The first message of `type` satisfying `predicate`, or a rejection on timeout or exit. */
  waitFor<T extends Out['type']>(
    type: T,
    predicate: (message: Extract<Out, { type: T }>) => boolean = () => true,
    timeoutMs = 60_000,
  ): Promise<Extract<Out, { type: T }>> {
    return new Promise((resolveMessage, reject) => {
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.name}: no '${type}' message within ${timeoutMs} ms\n${this.stderrTail}`));
      }, timeoutMs);
      const stop = this.onMessage((message) => {
        if (message.type !== type || !predicate(message as Extract<Out, { type: T }>)) return;
        done();
        resolveMessage(message as Extract<Out, { type: T }>);
      });
      const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
        done();
        reject(
          new Error(`${this.name} exited (${String(signal ?? code)}) while waiting for '${type}'\n${this.stderrTail}`),
        );
      };
      this.child.once('exit', onExit);
      const done = () => {
        clearTimeout(timer);
        stop();
        this.child.off('exit', onExit);
      };
    });
  }

  send(message: In): void {
    if (this.alive && this.child.connected) this.child.send(message as object);
  }

  /** Sends a signal to the process group and waits for the process to exit and its group to be gone. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await killGroup(this.child, this.exited, signal);
  }

  /** SIGTERM, then SIGKILL if it has not exited within `graceMs` (to the process group); waits until the group is gone. */
  async stop(graceMs = 8_000): Promise<void> {
    await stopGroup(this.child, this.exited, graceMs);
  }
}

/** A temporal-kcl worker process (bench/worker-process.ts). */
export class WorkerChild extends BenchChild<WorkerChildCommand, WorkerChildMessage> {
  workerQueue = '';
  private requests = 0;

  static async start(name: string, config: WorkerChildConfig, logDir: string): Promise<WorkerChild> {
    const worker = new WorkerChild(name, 'worker-process.ts', config, logDir);
    try {
      const ready = await worker.waitFor('ready', undefined, 120_000);
      worker.workerQueue = ready.workerQueue;
    } catch (error) {
      await worker.kill();
      throw error;
    }
    return worker;
  }

  /** AWS SDK commands the worker sent so far. */
  async calls(): Promise<WorkerCallCounts> {
    const requestId = ++this.requests;
    const reply = this.waitFor('calls', (message) => message.requestId === requestId, 10_000);
    this.send({ type: 'calls', requestId });
    return reply;
  }

  cpuSeconds(): number {
    return cpuSeconds(this.pid);
  }

  peakRssMiB(): number {
    return peakRssMiB(this.pid);
  }
}

/** The raw AWS-SDK reader process (bench/raw-reader-process.ts). */
export class RawReaderChild extends BenchChild<RawReadRequest, RawReaderMessage> {
  private requests = 0;

  static async start(endpoints: StackEndpoints, logDir: string): Promise<RawReaderChild> {
    const reader = new RawReaderChild('raw-reader', 'raw-reader-process.ts', endpoints, logDir);
    try {
      await reader.waitFor('ready', undefined, 60_000);
    } catch (error) {
      await reader.kill();
      throw error;
    }
    return reader;
  }

  async read(request: Omit<RawReadRequest, 'type' | 'requestId'>, timeoutMs = 600_000): Promise<RawReadResult> {
    const requestId = ++this.requests;
    const reply = this.waitFor('read', (message) => message.requestId === requestId, timeoutMs);
    this.send({ type: 'read', requestId, ...request });
    const result = await reply;
    if (result.error) throw new Error(`raw reader: ${result.error}`);
    return result;
  }
}

/** kinesalite in a process of its own (bench/kinesalite-process.ts). */
export class EmulatorChild extends BenchChild<never, EmulatorMessage> {
  endpoint = '';

  static async start(logDir: string): Promise<EmulatorChild> {
    const emulator = new EmulatorChild('kinesalite', 'kinesalite-process.ts', {}, logDir);
    try {
      emulator.endpoint = (await emulator.waitFor('ready', undefined, 60_000)).endpoint;
    } catch (error) {
      await emulator.kill();
      throw error;
    }
    return emulator;
  }

  cpuSeconds(): number {
    return cpuSeconds(this.pid);
  }
}

/** SIGKILLs every child still running. */
export async function killAllChildren(): Promise<void> {
  await Promise.all(
    [...live].map(
      (child) =>
        new Promise<void>((resolveExit) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolveExit();
          child.once('exit', () => resolveExit());
          signalGroup(child, 'SIGKILL');
        }),
    ),
  );
}

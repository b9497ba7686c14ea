import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';

/** How a local server was started, kept so it can be stopped and diagnosed. */
export interface ManagedProcessOptions {
  /** A short name for messages, e.g. 'temporal'. */
  name: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  /** File that receives the process's stdout and stderr. */
  logFile: string;
  /** Time between SIGTERM and SIGKILL when stopping. @default 5000 */
  killGraceMs?: number;
  /** Let the parent exit without stopping it first (the exit hook still kills it). @default false */
  unref?: boolean;
  /** Run as this user and group (e.g. PostgreSQL, which refuses to run as root). @default the parent's */
  uid?: number;
  gid?: number;
  /** The signal `stop()` starts with (PostgreSQL's fast shutdown is SIGINT). @default 'SIGTERM' */
  stopSignal?: NodeJS.Signals;
}

const live = new Set<ManagedProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort when the parent exits without stopping its servers (a failing test, an uncaught error):
  // 'exit' handlers must be synchronous, so SIGKILL whatever is still alive.
  process.on('exit', () => {
    for (const managed of live) managed.killNow();
  });
}

/**
 * A child process that is a local server: its output goes to a log file, and `stop()` sends SIGTERM, then SIGKILL after
 * a grace period (kinesis-local has been seen ignoring SIGTERM after heavy use).
 */
export class ManagedProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  private exitCode: number | null | undefined;

  constructor(readonly options: ManagedProcessOptions) {
    installExitHook();
    const fd = openSync(options.logFile, 'a');
    try {
      this.child = spawn(options.command, options.args, {
        env: options.env ?? process.env,
        stdio: ['ignore', fd, fd],
        ...(options.uid === undefined ? {} : { uid: options.uid }),
        ...(options.gid === undefined ? {} : { gid: options.gid }),
      });
    } finally {
      closeSync(fd);
    }
    live.add(this);
    if (options.unref) this.child.unref();
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        live.delete(this);
        this.exitCode = code ?? (signal ? -1 : null);
        resolve(code);
      });
      this.child.once('error', () => {
        live.delete(this);
        this.exitCode = -1;
        resolve(-1);
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** True once the process has exited. */
  get hasExited(): boolean {
    return this.exitCode !== undefined;
  }

  /** The last lines of the log, for error messages. */
  logTail(lines = 30): string {
    try {
      return readFileSync(this.options.logFile, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** An error that names the process and shows the end of its log. */
  failure(message: string, cause?: unknown): Error {
    return new Error(
      `${this.options.name}: ${message}\n--- ${this.options.logFile} (last lines) ---\n${this.logTail()}`,
      {
        cause,
      },
    );
  }

  /** SIGKILL at once, synchronously. */
  killNow(): void {
    if (!this.hasExited) this.child.kill('SIGKILL');
  }

  /** SIGTERM (or the `stopSignal`), then SIGKILL after the grace period; resolves when the process is gone. */
  async stop(): Promise<void> {
    if (this.hasExited) return;
    this.child.kill(this.options.stopSignal ?? 'SIGTERM');
    const grace = this.options.killGraceMs ?? 5_000;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), grace);
    });
    const outcome = await Promise.race([this.exited, timedOut]);
    clearTimeout(timer);
    if (outcome === 'timeout' && !this.hasExited) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }
}

/**
 * Child processes of the tests lead process groups of their own (spawned `detached`): a kill reaches whatever the child
 * started too, and a test can check that nothing of a killed worker is left running.
 */
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** Signals the child's process group; the child alone if the group is gone. */
export function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    if (child.pid !== undefined) {
      process.kill(-child.pid, signal);
      return;
    }
  } catch {
    // No such group (already reaped): fall back to the child itself.
  }
  child.kill(signal);
}

/** The processes of group `pgid` that are not zombies (from /proc; `signal 0` would count zombies too). */
export function liveGroupMembers(pgid: number): number[] {
  const members: number[] = [];
  if (pgid <= 0) return members;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its closing parenthesis.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z') members.push(Number(entry));
  }
  return members;
}

/**
 * Waits until no process of the group `pgid` is left (after its leader exited). One still running after `timeoutMs`
 * was leaked by the process under test: the group is SIGKILLed and this throws, naming them.
 */
export async function untilGroupGone(pgid: number, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const members = liveGroupMembers(pgid);
    if (members.length === 0) return;
    if (Date.now() > deadline) {
      try {
        process.kill(-pgid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
      throw new Error(
        `${what}: processes ${members.join(', ')} of its group still ran ${timeoutMs} ms after it exited`,
      );
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A process as /proc shows it (Linux). */
export interface ProcessInfo {
  pid: number;
  command: string;
}

function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so read after the last ')'.
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return '';
  }
}

/** Every process descended from `root` (children, their children, ...), with its command line. */
export function descendants(root: number): ProcessInfo[] {
  const parents = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const parent = parentOf(Number(entry));
    if (parent !== undefined) parents.set(Number(entry), parent);
  }
  const found: ProcessInfo[] = [];
  const visit = (pid: number) => {
    for (const [child, parent] of parents) {
      if (parent !== pid) continue;
      found.push({ pid: child, command: commandOf(child) });
      visit(child);
    }
  };
  visit(root);
  return found;
}

/** True while the process exists and is not a zombie. */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/**
 * Watching a crash test as it runs: the output file the worker processes share (what was delivered, which process holds
 * each shard, slow batches in flight) and the lease table's checkpoints over time.
 */
import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import type { CheckpointTable } from '../../src/checkpoint/checkpoint-table';
import type { WorkerProcessLine } from '../fixtures/worker-process';
import type { LeaseSnapshot } from './delivery-log';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Follows the shared output file as the workers append to it. */
export class OutputTail {
  readonly delivered = new Set<string>();
  /** Per worker pid, its slow batches still in processRecords (a `slow` line, no `checkpoint` yet), and since when. */
  readonly slowInFlight = new Map<number, Map<string, number>>();
  /** The worker pid whose processor has each shard (its latest `initialize`, until `shutdown`). */
  readonly holders = new Map<string, number>();
  lines = 0;
  private offset = 0;
  private partial = '';

  constructor(private readonly file: string) {}

  poll(): void {
    if (!existsSync(this.file)) return;
    const fd = openSync(this.file, 'r');
    try {
      const buffer = Buffer.alloc(1 << 20);
      for (;;) {
        const read = readSync(fd, buffer, 0, buffer.length, this.offset);
        if (read === 0) break;
        this.offset += read;
        const text = this.partial + buffer.subarray(0, read).toString('utf8');
        const lines = text.split('\n');
        this.partial = lines.pop() ?? '';
        for (const raw of lines) if (raw) this.take(JSON.parse(raw) as WorkerProcessLine);
      }
    } finally {
      closeSync(fd);
    }
  }

  private take(line: WorkerProcessLine): void {
    this.lines++;
    if (line.kind === 'record') this.delivered.add(line.data);
    if (line.kind === 'initialize') this.holders.set(line.shardId, line.pid);
    if (line.kind === 'shutdown' && this.holders.get(line.shardId) === line.pid) this.holders.delete(line.shardId);
    if (line.kind === 'slow') {
      const batches = this.slowInFlight.get(line.pid) ?? new Map<string, number>();
      batches.set(line.batch, line.at);
      this.slowInFlight.set(line.pid, batches);
    }
    if (line.kind === 'checkpoint' && line.batch) this.slowInFlight.get(line.pid)?.delete(line.batch);
  }
}

/** Reads the lease table every 100 ms and keeps each checkpoint the first time it is seen, with the read's end time. */
export function pollLeases(table: CheckpointTable) {
  const snapshots: LeaseSnapshot[] = [];
  const last = new Map<string, string>();
  let stopped = false;
  let polls = 0;
  const running = (async () => {
    while (!stopped) {
      try {
        const leases = await table.listLeases();
        const at = Date.now();
        polls++;
        for (const lease of leases) {
          if (lease.checkpoint === undefined) continue;
          const seen = JSON.stringify(lease.checkpoint);
          if (last.get(lease.shardId) === seen) continue;
          last.set(lease.shardId, seen);
          snapshots.push({ at, shardId: lease.shardId, checkpoint: lease.checkpoint });
        }
      } catch {
        // the table does not exist yet
      }
      await sleep(100);
    }
  })();
  return {
    snapshots,
    get polls() {
      return polls;
    },
    async stop() {
      stopped = true;
      await running;
    },
  };
}

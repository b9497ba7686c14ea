import Table from 'cli-table3';
import { type StreamStatus, WAITING_FOR_WORKER } from '../client/consumers';
import type { Lease } from '../checkpoint/lease-item';
import { type Checkpoint, formatPosition } from '../positions';

/** A shard's row in `status`: the numbers users watch. */
export interface ShardStatusRow {
  shardId: string;
  state: string;
  checkpoint: string;
  lastProcessed: string;
  records: number;
  bytes: number;
  millisBehindLatest: number | null;
  deaggregationFailures: number;
  deadLetteredRecords: number;
  worker: string | null;
  /** Times the stream consumer started this shard's consumer again, and why it last did. */
  restarts: number;
  lastEnd?: string;
  /** Without a live worker: the last state recorded in the KclState search attribute. */
  lastKnownState?: string;
  error?: string;
}

/**
 * A lease's checkpoint as the consumer reports it: KCL stores sub-sequence 0 for a plain record, which the consumer
 * shows without one.
 */
function leaseCheckpoint(lease: Lease | undefined): Checkpoint | undefined {
  const checkpoint = lease?.checkpoint;
  if (checkpoint === undefined || typeof checkpoint === 'string' || checkpoint.subSequenceNumber) return checkpoint;
  return { sequenceNumber: checkpoint.sequenceNumber };
}

function rows(status: StreamStatus): ShardStatusRow[] {
  return status.shards.map((shard) => {
    const progress = shard.progress;
    return {
      shardId: shard.shardId,
      state:
        shard.state === 'ENDED'
          ? `ENDED (${shard.reason ?? '?'})`
          : shard.state === 'RESTARTING'
            ? `RESTARTING (${shard.lastEnd ?? '?'})`
            : (progress?.state ?? (shard.error ? WAITING_FOR_WORKER : shard.state)),
      checkpoint: formatPosition(progress?.checkpoint ?? leaseCheckpoint(shard.lease)),
      lastProcessed: formatPosition(progress?.lastProcessed),
      records: progress?.counters.recordsProcessed ?? 0,
      bytes: progress?.counters.bytesProcessed ?? 0,
      millisBehindLatest: progress?.millisBehindLatest ?? null,
      deaggregationFailures: progress?.counters.deaggregationFailures ?? 0,
      deadLetteredRecords: progress?.counters.deadLetteredRecords ?? 0,
      worker: progress?.worker ?? null,
      restarts: shard.restarts ?? 0,
      ...(shard.lastEnd ? { lastEnd: shard.lastEnd } : {}),
      ...(shard.lastKnownState ? { lastKnownState: shard.lastKnownState } : {}),
      ...(shard.error ? { error: shard.error } : {}),
    };
  });
}

export type StatusSummary = ReturnType<typeof statusJson>;

/** The machine-readable status (`status --json`). */
export function statusJson(status: StreamStatus) {
  const shardRows = rows(status);
  return {
    applicationName: status.stream.applicationName,
    streamName: status.stream.streamName,
    state: status.stream.state,
    shardConsumersStarted: status.stream.started,
    shardConsumersRestarted: status.stream.restarts ?? 0,
    source: status.source,
    totals: {
      records: shardRows.reduce((sum, row) => sum + row.records, 0),
      bytes: shardRows.reduce((sum, row) => sum + row.bytes, 0),
    },
    shards: shardRows,
  };
}

/** Shortens a 56-digit sequence number for the table: its last digits identify it within a shard. */
function short(position: string): string {
  return position.replace(/\d{40,}/g, (digits) => `…${digits.slice(-12)}`);
}

/** The human-readable status table. */
export function renderStatus(summary: StatusSummary): string {
  const table = new Table({
    head: ['shard', 'state', 'checkpoint', 'last processed', 'records', 'ms behind', 'worker', 'restarts'],
    style: { head: [], border: [] },
  });
  for (const row of summary.shards) {
    table.push([
      row.shardId,
      row.error ? `${row.state} (${row.error.slice(0, 40)})` : row.state,
      short(row.checkpoint),
      short(row.lastProcessed),
      String(row.records),
      row.millisBehindLatest === null ? '-' : String(row.millisBehindLatest),
      row.worker ? row.worker.replace(/^.*@/, '') : '-',
      row.restarts > 0 ? `${row.restarts} (${(row.lastEnd ?? '').slice(0, 30)})` : '0',
    ]);
  }
  return [
    `${summary.applicationName} / ${summary.streamName}: ${summary.state}, ${summary.shards.length} shards, ${summary.totals.records} records`,
    table.toString(),
    ...(summary.source === 'queries'
      ? []
      : ['no worker answered: states from the KclState search attribute, checkpoints from the lease table']),
  ].join('\n');
}

/** Shard states `status --check` fails on. */
export const UNHEALTHY_STATES = ['HALTED', WAITING_FOR_WORKER] as const;

/**
 * What `status --check` fails on (empty when healthy): a shard HALTED or WAITING_FOR_WORKER, or behind the tip of its
 * shard by more than `maxBehindMs`.
 */
export function statusProblems(summary: StatusSummary, maxBehindMs: number): string[] {
  const problems: string[] = [];
  for (const row of summary.shards) {
    if ((UNHEALTHY_STATES as readonly string[]).includes(row.state)) {
      problems.push(`${row.shardId} is ${row.state}${row.error ? ` (${row.error})` : ''}`);
    } else if (row.millisBehindLatest !== null && row.millisBehindLatest > maxBehindMs) {
      problems.push(`${row.shardId} is ${row.millisBehindLatest} ms behind (more than --max-behind ${maxBehindMs} ms)`);
    }
  }
  return problems;
}

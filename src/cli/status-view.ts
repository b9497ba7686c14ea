import Table from 'cli-table3';
import { type StreamStatus, WAITING_FOR_WORKER } from '../client/consumers';
import { isLive } from '../placement';
import type { Lease } from '../checkpoint/lease-item';
import type { FleetShard, FleetView } from '../fleet-types';
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
  /** The worker queue holding the shard's processor: its lease item's `temporalKclWorker`, else the consumer's own word. */
  worker: string | null;
  /** KB/s and user records/s its worker last reported (one-minute averages), when it did. */
  kbps?: number;
  recordsPerSec?: number;
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

/** A worker's row in `status`: what it holds of this stream. */
export interface WorkerStatusRow {
  /** Its own task queue (`<task queue>@<identity>`). */
  worker: string;
  /** It polled the shared task queue within the last 70 s; null when the task queue could not be described. */
  live: boolean | null;
  /** Shards of this stream it holds (not ended, not waiting). */
  shards: number;
  /** Its `--max-shards`, as its lease reports say; null: unlimited or not reported. */
  maxShards: number | null;
  /** Sums of the one-minute averages its shards last reported. */
  recordsPerSec: number;
  kbps: number;
}

/**
 * The lease items of this stream, by shard id. A multi-stream table's lease keys are `<account>:<stream>:<epoch>:<shard
 * id>`: those of other streams are left out.
 */
function fleetShardsOf(fleet: FleetView | undefined, streamName: string): Map<string, FleetShard> {
  const shards = new Map<string, FleetShard>();
  for (const shard of fleet?.shards ?? []) {
    const parts = shard.shardId.split(':');
    if (parts.length === 1) shards.set(shard.shardId, shard);
    else if (parts.length === 4 && parts[1] === streamName && parts[3])
      shards.set(parts[3], { ...shard, shardId: parts[3] });
  }
  return shards;
}

function rows(status: StreamStatus, fleet?: FleetView): ShardStatusRow[] {
  const reported = fleetShardsOf(fleet, status.stream.streamName);
  return status.shards.map((shard) => {
    const progress = shard.progress;
    const state =
      shard.state === 'ENDED'
        ? `ENDED (${shard.reason ?? '?'})`
        : shard.state === 'RESTARTING'
          ? `RESTARTING (${shard.lastEnd ?? '?'})`
          : (progress?.state ?? (shard.error ? WAITING_FOR_WORKER : shard.state));
    // The lease item says where the processor is (its worker writes it); an ended or waiting shard has none.
    const lease = shard.state === 'ENDED' || state === WAITING_FOR_WORKER ? undefined : reported.get(shard.shardId);
    return {
      shardId: shard.shardId,
      state,
      checkpoint: formatPosition(progress?.checkpoint ?? leaseCheckpoint(shard.lease)),
      lastProcessed: formatPosition(progress?.lastProcessed),
      records: progress?.counters.recordsProcessed ?? 0,
      bytes: progress?.counters.bytesProcessed ?? 0,
      millisBehindLatest: progress?.millisBehindLatest ?? null,
      deaggregationFailures: progress?.counters.deaggregationFailures ?? 0,
      deadLetteredRecords: progress?.counters.deadLetteredRecords ?? 0,
      // A waiting shard is on no worker, whatever its lease item or its consumer last said.
      worker: state === WAITING_FOR_WORKER ? null : (lease?.worker ?? progress?.worker ?? null),
      ...(lease?.kbps !== undefined ? { kbps: lease.kbps } : {}),
      ...(lease?.recordsPerSec !== undefined ? { recordsPerSec: lease.recordsPerSec } : {}),
      restarts: shard.restarts ?? 0,
      ...(shard.lastEnd ? { lastEnd: shard.lastEnd } : {}),
      ...(shard.lastKnownState ? { lastKnownState: shard.lastKnownState } : {}),
      ...(shard.error ? { error: shard.error } : {}),
    };
  });
}

/** One row per worker: every poller of the task queue, and any worker still named by a shard of this stream. */
function workerRows(shardRows: ShardStatusRow[], fleet: FleetView | undefined): WorkerStatusRow[] {
  const workers = new Map<string, WorkerStatusRow>();
  const row = (worker: string): WorkerStatusRow => {
    let found = workers.get(worker);
    if (!found) {
      found = { worker, live: fleet ? false : null, shards: 0, maxShards: null, recordsPerSec: 0, kbps: 0 };
      workers.set(worker, found);
    }
    return found;
  };
  for (const poller of fleet?.workers ?? []) {
    const found = row(poller.workerQueue);
    found.live = fleet ? isLive(poller, fleet.at) : null;
    if (poller.maxShards !== undefined) found.maxShards = poller.maxShards;
  }
  for (const shard of shardRows) {
    if (!shard.worker || shard.state.startsWith('ENDED')) continue;
    const found = row(shard.worker);
    found.shards++;
    found.recordsPerSec += shard.recordsPerSec ?? 0;
    found.kbps += shard.kbps ?? 0;
  }
  return [...workers.values()].sort((a, b) => (a.worker < b.worker ? -1 : a.worker > b.worker ? 1 : 0));
}

export type StatusSummary = ReturnType<typeof statusJson>;

/**
 * The machine-readable status (`status --json`). With the fleet view (`describeFleet`): each shard's worker from its
 * lease item, and a row per worker.
 */
export function statusJson(status: StreamStatus, fleet?: FleetView) {
  const shardRows = rows(status, fleet);
  return {
    applicationName: status.stream.applicationName,
    streamName: status.stream.streamName,
    state: status.stream.state,
    shardConsumersStarted: status.stream.started,
    shardConsumersRestarted: status.stream.restarts ?? 0,
    /** How records are read: `fan-out` names the enhanced fan-out consumer. */
    retrieval: status.stream.fanOut
      ? { type: 'fan-out' as const, ...status.stream.fanOut }
      : { type: 'polling' as const },
    source: status.source,
    totals: {
      records: shardRows.reduce((sum, row) => sum + row.records, 0),
      bytes: shardRows.reduce((sum, row) => sum + row.bytes, 0),
    },
    shards: shardRows,
    workers: workerRows(shardRows, fleet),
    /** Shards waiting for a worker with room (WAITING_FOR_WORKER). */
    waiting: shardRows.filter((row) => row.state === WAITING_FOR_WORKER).length,
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
  const workers = new Table({
    head: ['worker', 'live', 'shards', 'max', 'records/s', 'KB/s'],
    style: { head: [], border: [] },
  });
  for (const row of summary.workers) {
    workers.push([
      row.worker.replace(/^.*@/, ''),
      row.live === null ? '?' : row.live ? 'yes' : 'no',
      String(row.shards),
      row.maxShards === null ? '-' : String(row.maxShards),
      row.recordsPerSec.toFixed(1),
      row.kbps.toFixed(1),
    ]);
  }
  return [
    `${summary.applicationName} / ${summary.streamName}: ${summary.state}, ${summary.shards.length} shards, ${summary.totals.records} records`,
    ...(summary.retrieval.type === 'fan-out'
      ? [`enhanced fan-out through consumer ${summary.retrieval.consumerName} (${summary.retrieval.consumerArn})`]
      : []),
    table.toString(),
    ...(summary.workers.length > 0 ? [workers.toString()] : []),
    `${summary.waiting} waiting for a worker`,
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

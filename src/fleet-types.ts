/**
 * The plain-JSON shapes of scale-out: what the stream consumer (the coordinator) knows of the workers serving a task
 * queue and of where each shard's processor lives, and the moves it plans. Pure types: workflows import them.
 */
import type { MoveReason } from './consumer-types';

/** A worker polling the shared task queue (from DescribeTaskQueue's pollers). */
export interface FleetWorker {
  /** Its own task queue, `<taskQueue>@<identity>`: where shards pinned to it send their work. */
  workerQueue: string;
  identity: string;
  /** When it last polled the shared queue (epoch ms, the server's `lastAccessTime`). */
  lastAccessTime: number;
  /** Its `maxShardsPerWorker`, once a lease item it holds says so (`temporalKclMaxShards`). @default unlimited */
  maxShards?: number;
}

/** One shard of the stream as the lease table says (the coordinator's own shard list says which are active). */
export interface FleetShard {
  shardId: string;
  /** The worker queue holding the shard's processor (`temporalKclWorker`); absent when none reported yet. */
  worker?: string;
  /** KB/s its worker measured (one-minute average; `throughputKBps`). */
  kbps?: number;
  /** User records/s its worker delivered (one-minute average; `temporalKclRecordsPerSec`). */
  recordsPerSec?: number;
  /** When its worker last reported the three above (epoch ms; `temporalKclReportedAt`). */
  reportedAt?: number;
  /** The shard reached SHARD_END (checkpoint): it is no longer placed. */
  ended: boolean;
}

/** A snapshot of the fleet and the shards' placement. */
export interface FleetView {
  /** When it was taken (epoch ms, worker clock). */
  at: number;
  workers: FleetWorker[];
  shards: FleetShard[];
}

/** A move the planner decided: the coordinator sends it as a `moveShard` signal. */
export interface PlannedMove {
  shardId: string;
  from?: string;
  to: string;
  reason: MoveReason;
}

/**
 * Input of the `watchFleet` activity (src/activities/fleet-activities.ts; on the shared task queue, started by the
 * stream consumer). It reads the shared queue's pollers (DescribeTaskQueue) and the lease table, and returns a
 * `FleetView`: at once when `known` is absent, otherwise when the set of live workers or any shard's worker differs
 * from `known`, or after `maxWaitMs`. It heartbeats while it waits.
 */
export interface WatchFleetInput {
  /** The shared task queue whose pollers are the fleet. */
  taskQueue: string;
  /** The lease table: each shard's worker (`temporalKclWorker`), cap and load. */
  tableName: string;
  /** Multi-stream lease tables: only the leases of this stream (`<account>:<stream>:<creation epoch>`). */
  streamIdentifier?: string;
  /** The view the caller last saw: the activity waits until the fleet differs from it. Absent: return at once. */
  known?: FleetView;
  /**
   * Longest wait for a change before returning the current view anyway.
   * @default 120000
   */
  maxWaitMs?: number;
}

/** The `watchFleet` activity's signature (the stream consumer proxies it by this type). */
export type WatchFleet = (input: WatchFleetInput) => Promise<FleetView>;

/** What `createFleetActivities` returns. */
export interface FleetActivities {
  watchFleet: WatchFleet;
}

/** `watchFleet`'s default `maxWaitMs`. */
export const DEFAULT_FLEET_WATCH_MAX_WAIT_MS = 120_000;

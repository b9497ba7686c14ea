/**
 * The fleet as the coordinator sees it: the workers polling the shared task queue (DescribeTaskQueue: a read of task
 * queue state, not a Temporal action) and, from a scan of the lease table, where each shard's processor lives and how
 * busy it is (the workers' load reports, load-reporter.ts). `watchFleet` is one long-running activity per stream
 * consumer that returns only when something the placement depends on changed.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { optionalTsToMs } from '@temporalio/common/lib/time';
import type { Client } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { CheckpointTable } from '../checkpoint/checkpoint-table';
import { isLive } from '../placement';
import { FailureType } from '../failure-types';
import {
  DEFAULT_FLEET_WATCH_MAX_WAIT_MS,
  type FleetActivities,
  type FleetShard,
  type FleetView,
  type FleetWorker,
  type WatchFleetInput,
} from '../fleet-types';
import { workerTaskQueue } from '../ids';

export type { WatchFleetInput };

/** How often `watchFleet` describes the shared task queue. */
export const FLEET_POLL_INTERVAL_MS = 2_000;
/** How often `watchFleet` scans the lease table. */
export const FLEET_SCAN_INTERVAL_MS = 5_000;
/** How often `watchFleet` heartbeats (each heartbeat that reaches the server is a billed action). */
export const FLEET_HEARTBEAT_INTERVAL_MS = 60_000;
export interface FleetActivityDeps {
  /** Temporal client (DescribeTaskQueue). */
  client?: Client;
  dynamoDb: DynamoDBClient;
}

/** The workers polling the shared task queue (one entry per identity, newest poll). */
export async function fleetWorkers(client: Client, taskQueue: string): Promise<Omit<FleetWorker, 'maxShards'>[]> {
  const response = await client.workflowService.describeTaskQueue({
    namespace: client.options.namespace,
    taskQueue: { name: taskQueue, kind: temporal.api.enums.v1.TaskQueueKind.TASK_QUEUE_KIND_NORMAL },
    taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
  });
  const byIdentity = new Map<string, Omit<FleetWorker, 'maxShards'>>();
  for (const poller of response.pollers ?? []) {
    const identity = poller.identity;
    if (!identity) continue;
    const lastAccessTime = optionalTsToMs(poller.lastAccessTime) ?? 0;
    const known = byIdentity.get(identity);
    if (!known || known.lastAccessTime < lastAccessTime) {
      byIdentity.set(identity, { workerQueue: workerTaskQueue(taskQueue, identity), identity, lastAccessTime });
    }
  }
  return [...byIdentity.values()].sort((a, b) => (a.workerQueue < b.workerQueue ? -1 : 1));
}

/** The stream's shards as the lease table says, and each reporting worker's cap (from its newest report). */
export async function fleetShards(
  table: CheckpointTable,
): Promise<{ shards: FleetShard[]; maxShards: Map<string, number> }> {
  const leases = await table.listLeaseReports();
  const caps = new Map<string, { maxShards?: number; at: number }>();
  const shards = leases.map(({ shardId, checkpoint, report }): FleetShard => {
    if (report.worker !== undefined) {
      const at = report.reportedAt ?? 0;
      const cap = caps.get(report.worker);
      if (!cap || cap.at <= at) {
        caps.set(report.worker, { at, ...(report.maxShards !== undefined ? { maxShards: report.maxShards } : {}) });
      }
    }
    return {
      shardId,
      ...(report.worker !== undefined ? { worker: report.worker } : {}),
      ...(report.kbps !== undefined ? { kbps: report.kbps } : {}),
      ...(report.recordsPerSec !== undefined ? { recordsPerSec: report.recordsPerSec } : {}),
      ...(report.reportedAt !== undefined ? { reportedAt: report.reportedAt } : {}),
      ended: checkpoint === 'SHARD_END',
    };
  });
  const maxShards = new Map<string, number>();
  for (const [worker, cap] of caps) if (cap.maxShards !== undefined) maxShards.set(worker, cap.maxShards);
  return { shards, maxShards };
}

function compose(
  workers: Omit<FleetWorker, 'maxShards'>[],
  scanned: { shards: FleetShard[]; maxShards: Map<string, number> },
  at: number,
): FleetView {
  return {
    at,
    workers: workers.map((worker) => {
      const maxShards = scanned.maxShards.get(worker.workerQueue);
      return { ...worker, ...(maxShards !== undefined ? { maxShards } : {}) };
    }),
    shards: scanned.shards,
  };
}

function tableOf(deps: FleetActivityDeps, input: WatchFleetInput): CheckpointTable {
  return new CheckpointTable({
    dynamoDb: deps.dynamoDb,
    tableName: input.tableName,
    ...(input.streamIdentifier !== undefined ? { streamIdentifier: input.streamIdentifier } : {}),
  });
}

function requireClient(deps: FleetActivityDeps): Client {
  if (!deps.client) {
    throw ApplicationFailure.create({
      type: FailureType.InvalidConfig,
      message: 'watchFleet needs a Temporal client: pass `client` to createActivities',
      nonRetryable: true,
    });
  }
  return deps.client;
}

/** One snapshot of the fleet: the workers polling `taskQueue` and the shards of the lease table (no activity context). */
export async function describeFleet(
  deps: { client: Client; dynamoDb: DynamoDBClient },
  input: Pick<WatchFleetInput, 'taskQueue' | 'tableName' | 'streamIdentifier'>,
): Promise<FleetView> {
  const [workers, scanned] = await Promise.all([
    fleetWorkers(deps.client, input.taskQueue),
    fleetShards(tableOf(deps, input)),
  ]);
  return compose(workers, scanned, Date.now());
}

/** Live workers (as of the view's own time) with their caps, as a comparable key. */
function liveKey(view: FleetView): string {
  return JSON.stringify(
    view.workers
      .filter((worker) => isLive(worker, view.at))
      .map((worker) => [worker.workerQueue, worker.maxShards ?? null])
      .sort(),
  );
}

/**
 * What changed between two views that placement depends on, or undefined: a worker became live or stale (or its cap
 * changed), a shard appeared, disappeared or ended, or a shard's worker changed. Load figures alone are not a change.
 */
export function fleetChange(known: FleetView, current: FleetView): string | undefined {
  if (liveKey(known) !== liveKey(current)) return 'workers';
  const before = new Map(known.shards.map((shard) => [shard.shardId, shard]));
  if (before.size !== current.shards.length) return 'shards';
  for (const shard of current.shards) {
    const old = before.get(shard.shardId);
    if (!old) return 'shards';
    if (old.ended !== shard.ended) return `shard ${shard.shardId} ended`;
    if (old.worker !== shard.worker) return `shard ${shard.shardId} moved`;
  }
  return undefined;
}

/** Activities that watch the fleet for the stream consumer (shared task queue). */
export function createFleetActivities(deps: FleetActivityDeps): FleetActivities {
  return {
    /**
     * Returns the fleet view as soon as it differs from `known` in a way placement cares about ({@link fleetChange}),
     * or after `maxWaitMs`; at once when `known` is absent. Polls DescribeTaskQueue every 2 s and scans the lease table
     * every 5 s, and again before it returns when its last scan is older than 2 s; heartbeats every minute (run it with a
     * heartbeat timeout of about 90 s); ends promptly when cancelled.
     */
    async watchFleet(input: WatchFleetInput): Promise<FleetView> {
      const client = requireClient(deps);
      const table = tableOf(deps, input);
      const snapshot = async (scanned?: Awaited<ReturnType<typeof fleetShards>>) => {
        const [workers, shards] = await Promise.all([
          fleetWorkers(client, input.taskQueue),
          scanned ? Promise.resolve(scanned) : fleetShards(table),
        ]);
        return { view: compose(workers, shards, Date.now()), shards };
      };
      const known = input.known;
      if (!known) return (await snapshot()).view;

      const context = Context.current();
      const deadline = Date.now() + (input.maxWaitMs ?? DEFAULT_FLEET_WATCH_MAX_WAIT_MS);
      // Not withHeartbeats: its cadence (a third of the heartbeat timeout) would bill a heartbeat every 10 s.
      const heartbeats = setInterval(() => context.heartbeat(), FLEET_HEARTBEAT_INTERVAL_MS);
      try {
        let { view, shards } = await snapshot();
        let scannedAt = Date.now();
        for (;;) {
          if (fleetChange(known, view) !== undefined || Date.now() >= deadline) {
            // Moves are planned on this view: where the shards are now, not as of a scan seconds old (shards that
            // placed themselves since would be sent to workers that filled up meanwhile).
            if (Date.now() - scannedAt > FLEET_POLL_INTERVAL_MS) ({ view } = await snapshot());
            return view;
          }
          // Rejects with the cancellation when the activity is cancelled (learnt at a heartbeat).
          await context.sleep(Math.max(0, Math.min(FLEET_POLL_INTERVAL_MS, deadline - Date.now())));
          const rescan = Date.now() - scannedAt >= FLEET_SCAN_INTERVAL_MS;
          ({ view, shards } = await snapshot(rescan ? undefined : shards));
          if (rescan) scannedAt = Date.now();
        }
      } finally {
        clearInterval(heartbeats);
      }
    },
  };
}

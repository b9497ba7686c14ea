/**
 * The stream consumer's activity proxies.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { FailureType } from '../failure-types';

/**
 * Listing shards and reading leases: transient faults back off up to a minute; a missing stream is not retried. The
 * activities heartbeat: one taken by a worker that then dies is retried elsewhere after `heartbeatTimeoutMs`.
 */
export function streamActivities(heartbeatTimeoutMs: number) {
  return proxyActivities<Activities>({
    startToCloseTimeout: '120s',
    heartbeatTimeout: heartbeatTimeoutMs,
    retry: {
      initialInterval: '1s',
      backoffCoefficient: 2,
      maximumInterval: '60s',
      nonRetryableErrorTypes: [FailureType.StreamNotFound, FailureType.LeaseTableSchema, FailureType.InvalidConfig],
    },
  });
}

/**
 * The fleet watch (`watchFleet`): it waits up to `maxWaitMs` for a change, heartbeating; when its worker dies, the
 * heartbeat timeout hands it to another worker. Failures back off up to a minute and are retried without end: placement
 * is an optimisation the stream consumer never fails for.
 */
export function fleetActivities(maxWaitMs: number) {
  return proxyActivities<Activities>({
    startToCloseTimeout: maxWaitMs + 60_000,
    // Heartbeats are billed actions: one a minute. A watch on a worker that died is noticed after 90 s, or at once when
    // a shard fails over from that worker (the stream consumer then starts the watch again).
    heartbeatTimeout: '90s',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '60s' },
  });
}

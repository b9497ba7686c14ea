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

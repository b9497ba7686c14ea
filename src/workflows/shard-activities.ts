/**
 * The shard consumer's activity proxies, each kind with a retry policy fit for its failures.
 */
import { proxyActivities, proxyLocalActivities, type RetryPolicy } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { FailureType } from '../failure-types';
import type { ResolvedShardConsumerOptions } from '../options';

/** Failures that retrying cannot fix; the workflow handles each. */
const NON_RETRYABLE = [
  FailureType.ExpiredIterator,
  FailureType.StreamNotFound,
  FailureType.ShardNotFound,
  FailureType.InvalidArgument,
  FailureType.InvalidConfig,
  FailureType.CheckpointConflict,
  FailureType.LeaseTableSchema,
  FailureType.InvalidLeaseRequest,
  FailureType.BatchLost,
  FailureType.ProcessorLost,
  FailureType.WorkerDraining,
  FailureType.ProcessorNotRegistered,
];

/** Kinesis control plane and the lease table: transient faults and throttling back off up to 30 s, forever. */
const CONTROL_RETRY: RetryPolicy = {
  initialInterval: '1s',
  backoffCoefficient: 2,
  maximumInterval: '30s',
  nonRetryableErrorTypes: NON_RETRYABLE,
};

/** GetRecords: throttling (5 reads/s/shard) and transient faults back off from 200 ms to 10 s, forever. */
const READ_RETRY: RetryPolicy = {
  initialInterval: '200ms',
  backoffCoefficient: 2,
  maximumInterval: '10s',
  nonRetryableErrorTypes: NON_RETRYABLE,
};

/** Checkpoint writes: quick retries of throttling and transient faults; a conflict means the shard was lost. */
const CHECKPOINT_RETRY: RetryPolicy = {
  initialInterval: '100ms',
  backoffCoefficient: 2,
  maximumInterval: '5s',
  nonRetryableErrorTypes: NON_RETRYABLE,
};

/**
 * Activities any worker of the task queue may run. They heartbeat, so one taken by a worker that then dies is retried on
 * another after the heartbeat timeout, not after the start-to-close timeout.
 */
export function controlActivities(options: ResolvedShardConsumerOptions) {
  return proxyActivities<Activities>({
    startToCloseTimeout: '60s',
    heartbeatTimeout: options.heartbeatTimeoutMs,
    retry: CONTROL_RETRY,
  });
}

/** The checkpoint write: a local activity (one marker in history, no round trip through a task queue). */
export function checkpointActivities() {
  return proxyLocalActivities<Activities>({ startToCloseTimeout: '30s', retry: CHECKPOINT_RETRY });
}

function processingRetry(options: ResolvedShardConsumerOptions): RetryPolicy {
  const { initialIntervalMs, maximumIntervalMs, maximumAttempts } = options.processingRetry;
  return {
    initialInterval: initialIntervalMs,
    backoffCoefficient: 2,
    maximumInterval: maximumIntervalMs,
    ...(maximumAttempts > 0 ? { maximumAttempts } : {}),
    nonRetryableErrorTypes: NON_RETRYABLE,
  };
}

/** `initialize` of a new processor instance, on whichever worker takes it (the shard is then pinned there). */
export function initializeActivities(options: ResolvedShardConsumerOptions) {
  return proxyActivities<Activities>({
    startToCloseTimeout: options.processTimeoutMs,
    heartbeatTimeout: options.heartbeatTimeoutMs,
    retry: processingRetry(options),
  });
}

/**
 * A task on a pinned worker that stops heartbeating means that worker is gone: retrying it would only wait again, on the
 * dead worker's queue, for the schedule-to-start timeout. Temporal lets a retry policy name a timeout as non-retryable.
 */
const HEARTBEAT_TIMEOUT = 'TemporalTimeout:Heartbeat';

const onPinnedWorker = (policy: RetryPolicy): RetryPolicy => ({
  ...policy,
  nonRetryableErrorTypes: [...(policy.nonRetryableErrorTypes ?? []), HEARTBEAT_TIMEOUT],
});

/**
 * Activities on the worker a shard is pinned to. A worker that is gone shows as a schedule-to-start timeout (nobody
 * polls its queue) or a heartbeat timeout (it died mid-call); the workflow then pins the shard elsewhere.
 */
export function pinnedActivities(options: ResolvedShardConsumerOptions, workerQueue: string, shardId: string) {
  const common = {
    taskQueue: workerQueue,
    scheduleToStartTimeout: options.workerScheduleToStartTimeoutMs,
    heartbeatTimeout: options.heartbeatTimeoutMs,
  };
  return {
    read: proxyActivities<Activities>({
      ...common,
      startToCloseTimeout: '60s',
      retry: onPinnedWorker(READ_RETRY),
      summary: `read ${shardId}`,
    }),
    process: proxyActivities<Activities>({
      ...common,
      startToCloseTimeout: options.processTimeoutMs,
      retry: onPinnedWorker(processingRetry(options)),
      summary: `process ${shardId}`,
    }),
    /** Dead-lettering must not give up: the records would be lost. It backs off like the control plane, forever. */
    deadLetter: proxyActivities<Activities>({
      ...common,
      startToCloseTimeout: options.processTimeoutMs,
      retry: onPinnedWorker(CONTROL_RETRY),
      summary: `dead-letter ${shardId}`,
    }),
  };
}

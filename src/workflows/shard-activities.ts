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
  FailureType.WorkerFull,
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

/**
 * The workflow's own checkpoint write (a dead-lettered batch's checkpoint): a local activity (one marker in history,
 * no round trip through a task queue). A processor's checkpoints are written on its worker.
 */
export function checkpointActivities() {
  return proxyLocalActivities<Activities>({ startToCloseTimeout: '30s', retry: CHECKPOINT_RETRY });
}

/**
 * Attempts left for a batch after `priorAttempts` (a window's): undefined when unlimited, 0 when none are left.
 */
export function processingAttemptsLeft(
  options: ResolvedShardConsumerOptions,
  priorAttempts: number,
): number | undefined {
  const { maximumAttempts } = options.processingRetry;
  return maximumAttempts > 0 ? Math.max(0, maximumAttempts - priorAttempts) : undefined;
}

function processingRetry(options: ResolvedShardConsumerOptions, priorAttempts = 0): RetryPolicy {
  const { initialIntervalMs, maximumIntervalMs } = options.processingRetry;
  const maximumAttempts = processingAttemptsLeft(options, priorAttempts) ?? 0;
  return {
    initialInterval: initialIntervalMs,
    backoffCoefficient: 2,
    maximumInterval: maximumIntervalMs,
    ...(maximumAttempts > 0 ? { maximumAttempts } : {}),
    nonRetryableErrorTypes: NON_RETRYABLE,
  };
}

/**
 * `initialize` of a new processor instance, on whichever worker takes it (the shard is then pinned there). Not
 * dispatched eagerly: the worker that completes the workflow task would take every shard it runs the workflow of.
 */
export function initializeActivities(options: ResolvedShardConsumerOptions) {
  return proxyActivities<Activities>({
    startToCloseTimeout: options.processTimeoutMs,
    heartbeatTimeout: options.heartbeatTimeoutMs,
    retry: processingRetry(options),
    allowEagerDispatch: false,
  });
}

/**
 * `initialize` on the worker a planned move chose (its own queue). Any refusal (full, draining), a worker that does not
 * answer within `workerScheduleToStartTimeoutMs`, or one that dies meanwhile ends the attempt: the shard falls back to
 * the shared queue at once.
 */
export function targetedInitializeActivities(options: ResolvedShardConsumerOptions, workerQueue: string) {
  return proxyActivities<Activities>({
    taskQueue: workerQueue,
    scheduleToStartTimeout: options.workerScheduleToStartTimeoutMs,
    startToCloseTimeout: options.processTimeoutMs,
    heartbeatTimeout: options.heartbeatTimeoutMs,
    retry: { ...processingRetry(options), maximumAttempts: 1 },
    summary: 'initialize on the chosen worker',
  }).initializeProcessor;
}

/**
 * A task on a pinned worker that stops heartbeating means that worker is gone: retrying it would only wait again, on the
 * dead worker's queue, for the schedule-to-start timeout. Temporal lets a retry policy name a timeout as non-retryable.
 */
const HEARTBEAT_TIMEOUT = 'TemporalTimeout:Heartbeat';

/** A read or a window that outlives its start-to-close timeout is on a worker that is gone: never retried either. */
const START_TO_CLOSE_TIMEOUT = 'TemporalTimeout:StartToClose';

const onPinnedWorker = (policy: RetryPolicy, ...timeouts: string[]): RetryPolicy => ({
  ...policy,
  nonRetryableErrorTypes: [...(policy.nonRetryableErrorTypes ?? []), HEARTBEAT_TIMEOUT, ...timeouts],
});

/**
 * Time a quiet read may take beyond its wait before its worker is presumed gone: a quarter of the wait, 1 s to 5 s.
 * The read returns by its wait + 500 ms whatever Kinesis does (the shard reader abandons a GetRecords in flight then),
 * so this only has to cover a busy worker's event loop and the round trip of the result.
 */
export function readSlackMs(waitMs: number): number {
  return Math.min(5_000, Math.max(1_000, Math.floor(waitMs / 4)));
}

/**
 * The longest a read waits at a quiet tip: twice `idleTimeBetweenReadsMs` (at least 1 s) for the first quiet read,
 * doubling with each quiet read in a row, up to `maxIdleWaitMs`. A shard that just went quiet is re-read soon (its
 * worker's loss is noticed soon); a shard that stays quiet costs one read per `maxIdleWaitMs`.
 */
export function idleWaitMs(options: ResolvedShardConsumerOptions, quietReads: number): number {
  if (quietReads <= 0) return 0;
  const first = Math.max(1_000, 2 * options.idleTimeBetweenReadsMs);
  return Math.min(options.maxIdleWaitMs, first * 2 ** Math.min(quietReads - 1, 20));
}

/**
 * The read activity on the pinned worker. An active read (the shard had records) heartbeats, so a dead worker is noticed
 * within `heartbeatTimeoutMs`, and returns at once when it finds nothing. A quiet read waits on the worker for records
 * (up to `waitMs`) without heartbeats, each of which would be a Temporal action; a dead worker is then noticed when the
 * read outlives its wait by {@link readSlackMs} (1 s at a shard's first quiet reads).
 */
export function readActivity(
  options: ResolvedShardConsumerOptions,
  workerQueue: string,
  shardId: string,
  waitMs: number,
) {
  return proxyActivities<Activities>({
    taskQueue: workerQueue,
    scheduleToStartTimeout: options.workerScheduleToStartTimeoutMs,
    ...(waitMs > 0
      ? { startToCloseTimeout: waitMs + readSlackMs(waitMs) }
      : { startToCloseTimeout: '60s', heartbeatTimeout: options.heartbeatTimeoutMs }),
    retry: onPinnedWorker(READ_RETRY, START_TO_CLOSE_TIMEOUT),
    summary: waitMs > 0 ? `wait for records on ${shardId}` : `read ${shardId}`,
  }).getRecords;
}

/** A window's heartbeats go out this often: three quarters of its heartbeat timeout. */
export const windowHeartbeatEveryMs = (options: ResolvedShardConsumerOptions): number =>
  Math.floor(options.windowHeartbeatTimeoutMs * 0.75);

/**
 * `windowed`: the window on the pinned worker. Its sparse heartbeats are its liveness; transient AWS faults end an
 * attempt with a retryable failure and the retry (same worker) carries on where it got to.
 */
export function windowActivities(options: ResolvedShardConsumerOptions, workerQueue: string, shardId: string) {
  return {
    window: proxyActivities<Activities>({
      taskQueue: workerQueue,
      scheduleToStartTimeout: options.workerScheduleToStartTimeoutMs,
      startToCloseTimeout: options.windowDurationMs + options.processTimeoutMs + 60_000,
      heartbeatTimeout: options.windowHeartbeatTimeoutMs,
      retry: onPinnedWorker(READ_RETRY, START_TO_CLOSE_TIMEOUT),
      summary: `window of ${shardId}`,
    }).processWindow,
    stop: proxyActivities<Activities>({
      taskQueue: workerQueue,
      scheduleToStartTimeout: options.workerScheduleToStartTimeoutMs,
      startToCloseTimeout: '10s',
      retry: { maximumAttempts: 1 },
      summary: `stop the window of ${shardId}`,
    }).stopWindow,
  };
}

/**
 * Activities on the worker a shard is pinned to. A worker that is gone shows as a schedule-to-start timeout (nobody
 * polls its queue) or a heartbeat timeout (it died mid-call); the workflow then pins the shard elsewhere.
 */
export function pinnedActivities(
  options: ResolvedShardConsumerOptions,
  workerQueue: string,
  shardId: string,
  priorAttempts = 0,
) {
  const common = {
    taskQueue: workerQueue,
    scheduleToStartTimeout: options.workerScheduleToStartTimeoutMs,
    heartbeatTimeout: options.heartbeatTimeoutMs,
  };
  return {
    process: proxyActivities<Activities>({
      ...common,
      startToCloseTimeout: options.processTimeoutMs,
      retry: onPinnedWorker(processingRetry(options, priorAttempts)),
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

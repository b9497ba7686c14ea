/**
 * Options of a shard consumer, in the Kinesis Client Library's vocabulary, with their defaults and their validation.
 *
 * Pure module: the workflow validates its input with the same schema the client helpers and the CLI use at the edge.
 */
import { z } from 'zod';
import type { DeadLetterDestination } from './consumer-types';
import { leaseTableNameProblem } from './ids';

/** Where a shard without a checkpoint starts (child shards of a reshard always start at TRIM_HORIZON). */
export const InitialPosition = {
  LATEST: 'LATEST',
  TRIM_HORIZON: 'TRIM_HORIZON',
  AT_TIMESTAMP: 'AT_TIMESTAMP',
} as const;
export type InitialPosition = (typeof InitialPosition)[keyof typeof InitialPosition];

/**
 * Workflow task timeout the stream consumer gives its shard consumers: a workflow task caught on a worker that dies
 * moves to another worker after this long (Temporal's own default is 10 s).
 */
export const DEFAULT_SHARD_WORKFLOW_TASK_TIMEOUT_MS = 2_000;

/**
 * How a shard consumer runs its batches (see the README's "Executions and their Temporal cost").
 * - `per-batch`: every Kinesis batch is a durable step of the workflow (a read activity, then a process activity).
 * - `windowed`: one activity on the shard's worker reads, processes and checkpoints many batches in-process; the
 *   workflow sees a window's result and sparse heartbeats. Far fewer Temporal actions, slower failover.
 */
export const Execution = {
  PER_BATCH: 'per-batch',
  WINDOWED: 'windowed',
} as const;
export type Execution = (typeof Execution)[keyof typeof Execution];

/**
 * How a shard consumer gets its records (see the README's "Enhanced fan-out").
 * - `polling`: GetRecords, paced per shard; every application of the stream shares the shard's 2 MB/s and 5 reads/s.
 * - `fan-out`: enhanced fan-out: a registered stream consumer and a `SubscribeToShard` push stream per shard, with 2 MB/s
 *   of its own per shard and about 70 ms from put to push. Runs in the `windowed` execution.
 */
export const Retrieval = {
  POLLING: 'polling',
  FAN_OUT: 'fan-out',
} as const;
export type Retrieval = (typeof Retrieval)[keyof typeof Retrieval];

/** What Kinesis accepts as a stream consumer's name (RegisterStreamConsumer). */
export const CONSUMER_NAME_PATTERN = /^[a-zA-Z0-9_.-]{1,128}$/;

/**
 * How often a stream consumer lists its stream's shards (children are started as soon as their parent's consumer reports
 * them; the listing is a safety net). As KCL's shardSyncIntervalMillis.
 */
export const DEFAULT_SHARD_SYNC_INTERVAL_MS = 60_000;

/** What happens to a batch whose processing still fails after `processingRetry.maximumAttempts`. */
export const FailureAction = {
  /** Keep the shard where it is: the consumer waits (state HALTED) until a `retryHalted` signal, nothing is skipped. */
  HALT: 'HALT',
  /** Send the failing records to the dead-letter destination and continue past them. */
  DEAD_LETTER: 'DEAD_LETTER',
} as const;
export type FailureAction = (typeof FailureAction)[keyof typeof FailureAction];

const durationMs = (what: string, min: number, max: number) =>
  z
    .number({ error: `${what} must be a number of milliseconds` })
    .int(`${what} must be a whole number of milliseconds`)
    .min(min, `${what} must be at least ${min} ms`)
    .max(max, `${what} must be at most ${max} ms`);

const isoTimestamp = z.iso.datetime({
  offset: true,
  error: 'initialPositionTimestamp must be an ISO-8601 date-time such as 2026-01-31T12:00:00Z',
});

/** The schema of {@link ShardConsumerOptions}; every field is optional and takes its documented default. */
export const shardConsumerOptionsSchema = z
  .object({
    maxRecords: z
      .number({ error: 'maxRecords must be a number' })
      .int('maxRecords must be a whole number')
      .min(1, 'maxRecords must be between 1 and 10000')
      .max(10_000, 'maxRecords must be between 1 and 10000')
      .default(10_000),
    retrieval: z.enum(['polling', 'fan-out'], { error: "retrieval must be 'polling' or 'fan-out'" }).default('polling'),
    consumerName: z
      .string({ error: 'consumerName must be a string' })
      .regex(
        CONSUMER_NAME_PATTERN,
        'consumerName must be 1-128 letters, digits, underscores, periods or hyphens (a Kinesis stream consumer name)',
      )
      .optional(),
    // The default depends on retrieval: see the transform below.
    execution: z.enum(['per-batch', 'windowed'], { error: "execution must be 'per-batch' or 'windowed'" }).optional(),
    idleTimeBetweenReadsMs: durationMs('idleTimeBetweenReadsMs', 0, 3_600_000).default(1_000),
    maxIdleWaitMs: durationMs('maxIdleWaitMs', 1_000, 600_000).default(30_000),
    windowDurationMs: durationMs('windowDurationMs', 1_000, 3_600_000).default(60_000),
    windowMaxBatches: z
      .number({ error: 'windowMaxBatches must be a number' })
      .int('windowMaxBatches must be a whole number')
      .min(1, 'windowMaxBatches must be at least 1')
      .max(1_000_000, 'windowMaxBatches must be at most 1000000')
      .default(10_000),
    windowHeartbeatTimeoutMs: durationMs('windowHeartbeatTimeoutMs', 2_000, 600_000).default(10_000),
    parentShardPollIntervalMs: durationMs('parentShardPollIntervalMs', 100, 3_600_000).default(10_000),
    callProcessRecordsEvenForEmptyRecordList: z.boolean().default(false),
    initialPosition: z
      .enum(['LATEST', 'TRIM_HORIZON', 'AT_TIMESTAMP'], {
        error: 'initialPosition must be LATEST, TRIM_HORIZON or AT_TIMESTAMP',
      })
      .default('LATEST'),
    initialPositionTimestamp: isoTimestamp.optional(),
    prefetch: z.boolean().default(true),
    maxBatchesPerRun: z.number().int().min(1, 'maxBatchesPerRun must be at least 1').max(100_000).default(20),
    processTimeoutMs: durationMs('processTimeoutMs', 1_000, 86_400_000).default(300_000),
    heartbeatTimeoutMs: durationMs('heartbeatTimeoutMs', 500, 600_000).default(1_500),
    workerScheduleToStartTimeoutMs: durationMs('workerScheduleToStartTimeoutMs', 500, 600_000).default(1_000),
    minTimeBetweenReadsMs: durationMs('minTimeBetweenReadsMs', 0, 60_000).default(200),
    processingRetry: z
      .object({
        initialIntervalMs: durationMs('processingRetry.initialIntervalMs', 1, 3_600_000).default(1_000),
        maximumIntervalMs: durationMs('processingRetry.maximumIntervalMs', 1, 86_400_000).default(60_000),
        maximumAttempts: z
          .number()
          .int()
          .min(0, 'processingRetry.maximumAttempts must be 0 (unlimited) or more')
          .default(0),
      })
      .strict()
      .prefault({}),
    onProcessingFailure: z
      .enum(['HALT', 'DEAD_LETTER'], { error: 'onProcessingFailure must be HALT or DEAD_LETTER' })
      .default('HALT'),
    deadLetterGranularity: z.enum(['RECORD', 'BATCH']).default('RECORD'),
    deadLetter: z
      .discriminatedUnion(
        'type',
        [
          z
            .object({ type: z.literal('CALLBACK'), name: z.string().min(1, 'deadLetter.name must not be empty') })
            .strict(),
          z
            .object({
              type: z.literal('DYNAMODB'),
              tableName: z
                .string()
                .regex(/^[a-zA-Z0-9_.-]{3,255}$/, 'deadLetter.tableName must be a valid DynamoDB table name'),
            })
            .strict(),
          z
            .object({
              type: z.literal('KINESIS'),
              streamName: z
                .string()
                .regex(/^[a-zA-Z0-9_.-]{1,128}$/, 'deadLetter.streamName must be a valid Kinesis stream name'),
            })
            .strict(),
        ],
        {
          error:
            'deadLetter must be { type: CALLBACK, name } or { type: DYNAMODB, tableName } or { type: KINESIS, streamName }',
        },
      )
      .optional(),
  })
  .strict()
  .superRefine((options, ctx) => {
    if (options.initialPosition === 'AT_TIMESTAMP' && !options.initialPositionTimestamp) {
      ctx.addIssue({
        code: 'custom',
        path: ['initialPositionTimestamp'],
        message: 'initialPosition AT_TIMESTAMP needs initialPositionTimestamp (an ISO-8601 date-time)',
      });
    }
    if (options.onProcessingFailure === 'DEAD_LETTER' && !options.deadLetter) {
      ctx.addIssue({
        code: 'custom',
        path: ['deadLetter'],
        message: 'onProcessingFailure DEAD_LETTER needs a deadLetter destination (CALLBACK, DYNAMODB or KINESIS)',
      });
    }
    if (options.onProcessingFailure === 'DEAD_LETTER' && options.processingRetry.maximumAttempts === 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['processingRetry', 'maximumAttempts'],
        message: 'onProcessingFailure DEAD_LETTER needs processingRetry.maximumAttempts > 0 (0 retries forever)',
      });
    }
    if (options.idleTimeBetweenReadsMs > options.maxIdleWaitMs) {
      ctx.addIssue({
        code: 'custom',
        path: ['maxIdleWaitMs'],
        message: 'maxIdleWaitMs must not be below idleTimeBetweenReadsMs (the wait polls Kinesis that often)',
      });
    }
    if (options.processingRetry.maximumIntervalMs < options.processingRetry.initialIntervalMs) {
      ctx.addIssue({
        code: 'custom',
        path: ['processingRetry', 'maximumIntervalMs'],
        message: 'processingRetry.maximumIntervalMs must not be below initialIntervalMs',
      });
    }
    if (options.retrieval === 'fan-out' && options.execution === 'per-batch') {
      ctx.addIssue({
        code: 'custom',
        path: ['execution'],
        message:
          "retrieval 'fan-out' runs in the windowed execution (per-batch would cost two Temporal actions per pushed event): leave execution out or set it to 'windowed'",
      });
    }
    if (options.consumerName !== undefined && options.retrieval !== 'fan-out') {
      ctx.addIssue({
        code: 'custom',
        path: ['consumerName'],
        message: "consumerName names the enhanced fan-out consumer: it needs retrieval 'fan-out'",
      });
    }
  })
  // `polling` runs per-batch unless told otherwise; `fan-out` always runs windowed.
  .transform((options) => ({
    ...options,
    execution: options.execution ?? (options.retrieval === 'fan-out' ? Execution.WINDOWED : Execution.PER_BATCH),
  }));

/**
 * How a shard consumer reads and delivers records. Names follow the Kinesis Client Library's configuration.
 */
export interface ShardConsumerOptions {
  /**
   * Most records one GetRecords call may return (Kinesis allows 1-10000).
   * @default 10000
   */
  maxRecords?: number;
  /**
   * How the consumer runs its batches: `per-batch` makes every batch a durable workflow step (fast failover, about 2
   * Temporal actions a batch); `windowed` runs many batches in one activity on the shard's worker (about 0.15 actions a
   * second whatever the record rate, failover within `windowHeartbeatTimeoutMs`). See the README's executions section.
   * @default 'per-batch' ('windowed' with `retrieval: 'fan-out'`, which runs only windowed)
   */
  execution?: Execution;
  /**
   * How records are read: `polling` (GetRecords) or `fan-out` (enhanced fan-out: a registered stream consumer and a
   * `SubscribeToShard` push stream per shard, its own 2 MB/s per shard, ~70 ms put-to-push; AWS charges for it, see the
   * README's "Enhanced fan-out"). The stream consumer registers the consumer if it does not exist yet; `temporal-kcl
   * stop --deregister` removes it.
   * @default 'polling'
   */
  retrieval?: Retrieval;
  /**
   * `fan-out`: the name of the stream consumer (RegisterStreamConsumer) the shards subscribe through. Applications on
   * one stream need different names; one application's consumers (workers, restarts) share one.
   * @default the application name
   */
  consumerName?: string;
  /**
   * While a shard is at its tip and reads return nothing, Kinesis is polled this often for new records. The polling
   * happens on the worker, inside the read, so a quiet shard costs no workflow timer; new records reach the processor
   * within this long of arriving.
   * @default 1000
   */
  idleTimeBetweenReadsMs?: number;
  /**
   * Longest one read waits on the worker for records to arrive at a quiet shard (polling every
   * `idleTimeBetweenReadsMs`) before it returns empty. An idle shard costs about one Temporal action per this long,
   * and the loss of its worker is noticed within this long plus a few seconds. Waits start shorter (twice
   * `idleTimeBetweenReadsMs`) and double while the shard stays quiet.
   * @default 30000
   */
  maxIdleWaitMs?: number;
  /**
   * `windowed`: the longest a window (one activity running batches in-process) lasts before it reports to the
   * workflow and the next one starts. A window also ends at shard end, on a failure, on a stop, after
   * `windowMaxBatches`, and after `maxIdleWaitMs` without records (the shard then waits like `per-batch`).
   * @default 60000
   */
  windowDurationMs?: number;
  /**
   * `windowed`: most batches one window processes.
   * @default 10000
   */
  windowMaxBatches?: number;
  /**
   * `windowed`: the window's heartbeat timeout. A window heartbeats (with its position) every three quarters of it,
   * each heartbeat one Temporal action, and a worker that dies is noticed within it. This is the option that trades
   * actions for failover: 10 s costs about 0.13 actions a second per busy shard and fails over in about 7 s (median);
   * 4 s costs about 0.33 and fails over in about 3 s.
   * @default 10000
   */
  windowHeartbeatTimeoutMs?: number;
  /**
   * How often a child shard's consumer checks whether its parent shards have ended.
   * @default 10000
   */
  parentShardPollIntervalMs?: number;
  /**
   * Call `processRecords` also with an empty batch (to let the processor checkpoint or flush on a quiet shard).
   * @default false
   */
  callProcessRecordsEvenForEmptyRecordList?: boolean;
  /**
   * Where a shard without a checkpoint starts. Child shards of a reshard always start at TRIM_HORIZON.
   * @default 'LATEST'
   */
  initialPosition?: InitialPosition;
  /** ISO-8601 date-time for `initialPosition: 'AT_TIMESTAMP'`. Required with it. */
  initialPositionTimestamp?: string;
  /**
   * Read the next batch while the current one is processed (delivery order is unchanged). While the shard is behind
   * (full batches, or millisBehindLatest above 0), the worker holding the shard also starts each next read as soon as
   * a batch arrives, without waiting for a workflow task to ask for it.
   * @default true
   */
  prefetch?: boolean;
  /**
   * Batches one workflow run handles before it continues as new (it also does when Temporal suggests it). A worker that
   * takes a shard over replays the current run first (about 1 ms per history event here), so shorter runs fail over
   * faster; a run adds only a few events of its own.
   * @default 20
   */
  maxBatchesPerRun?: number;
  /**
   * Least time between two GetRecords calls on the shard, busy or not: real Kinesis allows 5 reads per second per
   * shard, shared by every consumer of the stream. 0 turns pacing off.
   * @default 200
   */
  minTimeBetweenReadsMs?: number;
  /**
   * Longest one `processRecords` (or `initialize`, `shutdown`) call may take before the attempt is retried.
   * @default 300000
   */
  processTimeoutMs?: number;
  /**
   * A worker that stops heartbeating for this long while reading or processing a batch is presumed dead and the shard
   * moves to another worker. Heartbeats are sent for you (every 400 ms at most); a `processRecords` that blocks the event
   * loop for longer than this makes the shard move, so raise it for CPU-heavy processors.
   * @default 1500
   */
  heartbeatTimeoutMs?: number;
  /**
   * A read or process task that waits this long for the worker the shard is pinned to moves the shard to another worker
   * (which resumes from the last checkpoint). Chosen with `heartbeatTimeoutMs` and the worker's sticky-queue timeout so
   * that a killed worker's shards move in under 3 s (see the benchmark's failover figures).
   * @default 1000
   */
  workerScheduleToStartTimeoutMs?: number;
  /** Retry policy for a failing `processRecords`. */
  processingRetry?: {
    /** @default 1000 */
    initialIntervalMs?: number;
    /** @default 60000 */
    maximumIntervalMs?: number;
    /**
     * Attempts before `onProcessingFailure` applies; 0 retries forever (the batch is never skipped).
     * @default 0
     */
    maximumAttempts?: number;
  };
  /**
   * After `processingRetry.maximumAttempts` failed attempts: halt the shard, or dead-letter and continue.
   * @default 'HALT'
   */
  onProcessingFailure?: FailureAction;
  /**
   * With DEAD_LETTER: find and dead-letter only the records that fail on their own (RECORD), or the whole batch (BATCH).
   * @default 'RECORD'
   */
  deadLetterGranularity?: 'RECORD' | 'BATCH';
  /** Where DEAD_LETTER sends records. Required with `onProcessingFailure: 'DEAD_LETTER'`. */
  deadLetter?: DeadLetterDestination;
}

/** Options with every default applied. */
export type ResolvedShardConsumerOptions = z.output<typeof shardConsumerOptionsSchema>;

/** Result of validating options: the resolved options, or one readable message per problem. */
export type OptionsValidation = { ok: true; options: ResolvedShardConsumerOptions } | { ok: false; issues: string[] };

/** Validates options and applies defaults. Unknown keys are errors (a misspelt option must not be silently ignored). */
export function validateShardConsumerOptions(options: unknown): OptionsValidation {
  const result = shardConsumerOptionsSchema.safeParse(options ?? {});
  if (result.success) return { ok: true, options: result.data };
  return {
    ok: false,
    issues: result.error.issues.map((issue) => {
      const path = issue.path.join('.');
      if (issue.code === 'unrecognized_keys') return `unknown option(s): ${issue.keys.join(', ')}`;
      return path && !issue.message.startsWith(path) ? `${path}: ${issue.message}` : issue.message;
    }),
  };
}

/** The stream consumer's own settings (beside its shards' options), as its input and `startStreamConsumer` take them. */
export interface StreamConsumerSettings {
  shardSyncIntervalMs?: number | undefined;
  shardWorkflowTaskTimeoutMs?: number | undefined;
  maxHistoryEventsPerRun?: number | undefined;
  shardAuditIntervalMs?: number | undefined;
  /** The lease table, after its default (the application name) is applied. */
  tableName: string;
}

/**
 * What is wrong with the stream consumer's settings (an empty list if nothing): the client checks them before it starts
 * anything, and the workflow again for callers that start it themselves. Settings left out take their defaults.
 */
export function streamConsumerSettingsProblems(settings: StreamConsumerSettings): string[] {
  const problems: string[] = [];
  const whole = (name: string, value: number | undefined, min: number, max: number, rule: string) => {
    if (value !== undefined && (!Number.isInteger(value) || value < min || value > max)) {
      problems.push(`${name} must be a whole number ${rule}, got ${String(value)}`);
    }
  };
  whole('shardSyncIntervalMs', settings.shardSyncIntervalMs, 100, Infinity, 'of milliseconds >= 100');
  whole(
    'shardWorkflowTaskTimeoutMs',
    settings.shardWorkflowTaskTimeoutMs,
    1_000,
    120_000,
    'of milliseconds from 1000 to 120000',
  );
  whole('maxHistoryEventsPerRun', settings.maxHistoryEventsPerRun, 100, Infinity, '>= 100');
  whole('shardAuditIntervalMs', settings.shardAuditIntervalMs, 100, Infinity, 'of milliseconds >= 100');
  const tableProblem = leaseTableNameProblem(settings.tableName);
  if (tableProblem) problems.push(tableProblem);
  return problems;
}

/**
 * Runs one ShardConsumerWorkflow over a pre-filled shard on a worker process, timed from the start request until the
 * processor has seen every record, then stops it and checks that every record was delivered exactly once. Also the
 * start and the stop of a shard consumer the other measurements use.
 */
import type { WorkflowHandle } from '@temporalio/client';
import { defaultTableName, shardConsumerWorkflowId } from '../../src/ids';
import { DEFAULT_SHARD_WORKFLOW_TASK_TIMEOUT_MS, type ShardConsumerOptions } from '../../src/options';
import { shardConsumerWorkflow, stopSignal } from '../../src/workflows/shard-consumer';
import type { WorkerChild } from './children';
import type { BenchContext } from './context';
import { type BenchShard, uniqueName } from './kinesis';
import type { BatchReport } from './protocol';

/** How long a consumer asked to stop may take before it is terminated. */
export const STOP_TIMEOUT_MS = 60_000;

/**
 * A workflow task timeout: ms, or seconds as Temporal writes them ('10s'). Not '@temporalio/common''s `Duration`: its
 * string half comes from the 'ms' package, whose types do not resolve under node16 module resolution (an error type).
 */
export type WorkflowTaskTimeout = number | `${number}s`;

/** A shard consumer the benchmark starts directly (not through a stream consumer). */
export interface ShardConsumerStart {
  taskQueue: string;
  applicationName: string;
  streamName: string;
  shard: BenchShard;
  options: ShardConsumerOptions;
  /** Default: the one the stream consumer gives its shard consumers (DEFAULT_SHARD_WORKFLOW_TASK_TIMEOUT_MS). */
  workflowTaskTimeout?: WorkflowTaskTimeout;
}

/** Starts a shard consumer with the 'bench' processor, as the stream consumer would start it. */
export async function startShardConsumer(
  context: BenchContext,
  start: ShardConsumerStart,
): Promise<WorkflowHandle<typeof shardConsumerWorkflow>> {
  const workflowTaskTimeout = start.workflowTaskTimeout ?? DEFAULT_SHARD_WORKFLOW_TASK_TIMEOUT_MS;
  return context.client.workflow.start(shardConsumerWorkflow, {
    taskQueue: start.taskQueue,
    workflowId: shardConsumerWorkflowId(start.applicationName, start.streamName, start.shard.shardId),
    workflowTaskTimeout,
    args: [
      {
        applicationName: start.applicationName,
        streamName: start.streamName,
        shardId: start.shard.shardId,
        processor: 'bench',
        // As the stream consumer passes them: no ListShards at start-up; the same timeout after continue-as-new.
        parentShardIds: [],
        workflowTaskTimeoutMs:
          typeof workflowTaskTimeout === 'number'
            ? workflowTaskTimeout
            : Number(workflowTaskTimeout.slice(0, -1)) * 1_000,
        hashKeyRange: start.shard.hashKeyRange,
        options: start.options,
      },
    ],
  });
}

/**
 * Signals a consumer (shard or stream) to stop and waits up to `timeoutMs` for it to end; terminates it if it does not
 * end in time or the stop fails. Never throws: for `finally` blocks.
 */
export async function stopOrTerminate(
  handle: WorkflowHandle,
  timeoutMs: number,
  log?: (line: string) => void,
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${handle.workflowId} did not stop within ${timeoutMs} ms`)), timeoutMs);
  });
  const stopAndWait = async () => {
    await handle.signal(stopSignal);
    await handle.result();
  };
  try {
    await Promise.race([stopAndWait(), timedOut]);
  } catch (error) {
    log?.(`${String(error)}; terminating`);
    await handle.terminate('benchmark cleanup').catch(() => undefined);
  } finally {
    clearTimeout(timer);
  }
}

export interface ShardRunInput {
  worker: WorkerChild;
  taskQueue: string;
  streamName: string;
  shard: BenchShard;
  expectedRecords: number;
  options: ShardConsumerOptions;
  /** Called once every record was processed, before the consumer is stopped (e.g. to read its history). */
  beforeStop?: (handle: WorkflowHandle<typeof shardConsumerWorkflow>) => Promise<void>;
  timeoutMs?: number;
}

export interface ShardRunResult {
  applicationName: string;
  /** Start request → the last record's processRecords call. */
  elapsedMs: number;
  /** Start request → the first batch's processRecords call, and its records. */
  firstBatchMs: number;
  firstBatchRecords: number;
  records: number;
  bytes: number;
  /** processRecords calls with records. */
  batches: number;
  /** CPU seconds the worker process used over `elapsedMs`. */
  workerCpuSeconds: number;
}

export async function runShardConsumer(context: BenchContext, input: ShardRunInput): Promise<ShardRunResult> {
  const applicationName = uniqueName('app');
  await context.createLeaseTable(defaultTableName(applicationName));
  const reports: BatchReport[] = [];
  let records = 0;
  let resolveDone: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (resolveDone = resolve));
  const stopListening = input.worker.onMessage((message) => {
    if (message.type !== 'batch' || message.applicationName !== applicationName || message.records === 0) return;
    reports.push(message);
    records += message.records;
    if (records >= input.expectedRecords) resolveDone();
  });
  const timeoutMs = input.timeoutMs ?? 300_000;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new Error(
            `consumer of ${input.streamName}: ${records} of ${input.expectedRecords} records within ${timeoutMs} ms`,
          ),
        ),
      timeoutMs,
    );
  });
  const workerDied = input.worker.exited.then((how) => {
    throw new Error(`worker ${input.worker.name} exited (${String(how)})\n${input.worker.stderr}`);
  });
  workerDied.catch(() => undefined);
  let handle: WorkflowHandle<typeof shardConsumerWorkflow> | undefined;
  let stopped = false;
  try {
    const cpuBefore = input.worker.cpuSeconds();
    const startedAt = Date.now();
    handle = await startShardConsumer(context, {
      taskQueue: input.taskQueue,
      applicationName,
      streamName: input.streamName,
      shard: input.shard,
      options: input.options,
    });
    await Promise.race([done, timedOut, workerDied]);
    const workerCpuSeconds = input.worker.cpuSeconds() - cpuBefore;
    const first = reports[0]!;
    const last = reports.at(-1)!;
    await input.beforeStop?.(handle);
    await handle.signal(stopSignal);
    await Promise.race([handle.result(), timedOut, workerDied]);
    stopped = true;
    // Give a stray duplicate a moment to show up before counting.
    await new Promise((r) => setTimeout(r, 100));
    if (records !== input.expectedRecords) {
      throw new Error(
        `consumer of ${input.streamName} delivered ${records} records, expected ${input.expectedRecords}`,
      );
    }
    return {
      applicationName,
      elapsedMs: last.at - startedAt,
      firstBatchMs: first.at - startedAt,
      firstBatchRecords: first.records,
      records,
      bytes: reports.reduce((sum, report) => sum + report.bytes, 0),
      batches: reports.length,
      workerCpuSeconds,
    };
  } finally {
    clearTimeout(timer);
    stopListening();
    // A failed run (timeout, dead worker) must not leave its consumer running: a dead worker cannot stop it.
    if (handle && !stopped) {
      await stopOrTerminate(handle, input.worker.alive ? STOP_TIMEOUT_MS : 0, (line) => context.log(`  ${line}`));
    }
  }
}

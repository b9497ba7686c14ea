/**
 * Runs one ShardConsumerWorkflow over a pre-filled shard on a worker process, timed from the start request until the
 * processor has seen every record, then stops it and checks that every record was delivered exactly once.
 */
import type { WorkflowHandle } from '@temporalio/client';
import { shardConsumerWorkflowId } from '../../src/ids';
import type { ShardConsumerOptions } from '../../src/options';
import { shardConsumerWorkflow, stopSignal } from '../../src/workflows/shard-consumer';
import type { WorkerChild } from './children';
import type { BenchContext } from './context';
import { type BenchShard, uniqueName } from './kinesis';
import type { BatchReport } from './protocol';

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
  await context.createLeaseTable(applicationName);
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
  try {
    const cpuBefore = input.worker.cpuSeconds();
    const startedAt = Date.now();
    const handle = await context.client.workflow.start(shardConsumerWorkflow, {
      taskQueue: input.taskQueue,
      workflowId: shardConsumerWorkflowId(applicationName, input.streamName, input.shard.shardId),
      args: [
        {
          applicationName,
          streamName: input.streamName,
          shardId: input.shard.shardId,
          processor: 'bench',
          // As the stream consumer passes them: no ListShards at start-up.
          parentShardIds: [],
          hashKeyRange: input.shard.hashKeyRange,
          options: input.options,
        },
      ],
    });
    await Promise.race([done, timedOut, workerDied]);
    const workerCpuSeconds = input.worker.cpuSeconds() - cpuBefore;
    const first = reports[0]!;
    const last = reports.at(-1)!;
    await input.beforeStop?.(handle);
    await handle.signal(stopSignal);
    await Promise.race([handle.result(), timedOut, workerDied]);
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
  }
}

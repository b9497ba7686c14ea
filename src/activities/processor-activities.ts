import { ApplicationFailure, Context } from '@temporalio/activity';
import type { ProcessOutcome, ShardRef, ShutdownOutcome } from '../consumer-types';
import { KclError } from '../errors';
import { FailureType } from '../failure-types';
import { type Checkpoint, type ExtendedSequenceNumber, formatPosition, positionOf } from '../positions';
import type { ShutdownReason } from '../record-processor';
import type { BatchCache } from './batch-cache';
import { withHeartbeats } from './heartbeat';
import { countRetry, shardMetrics } from './metrics';
import { HostRefusedError, type ProcessorHost, refusalFailure } from './processor-host';
import { RangeCheckpointer } from './range-checkpointer';

export interface ProcessorActivityDeps {
  host: ProcessorHost;
  cache: BatchCache;
  /** This worker's own task queue: where a shard pinned here sends its reads and batches. */
  workerQueue: string;
}

export interface ProcessRecordsInput {
  ref: ShardRef;
  pin: string;
  handle: string;
  /** The durable checkpoint: the lower bound of what the processor may checkpoint. */
  lastCheckpoint?: Checkpoint;
  /** The last record delivered before this batch (the upper bound when this batch is empty). */
  lastProcessed?: ExtendedSequenceNumber;
}

export interface ShutdownProcessorInput {
  ref: ShardRef;
  processorName: string;
  pin: string;
  reason: ShutdownReason;
  /** Passed to `initialize` if a fresh processor must be created for the shutdown call. */
  startingPosition: Checkpoint;
  lastCheckpoint?: Checkpoint;
  lastProcessed?: ExtendedSequenceNumber;
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

function processorFailure(error: unknown, what: string): ApplicationFailure {
  if (error instanceof ApplicationFailure) return error;
  if (error instanceof HostRefusedError) return refusalFailure(error);
  return userFailure(error, what);
}

/**
 * For activities on the shared task queue that would create a processor here: a stopping worker must not take the
 * shard, but the task must not fail either — it is retried, and another worker takes it.
 */
function sharedQueueFailure(error: unknown, what: string): ApplicationFailure {
  if (error instanceof HostRefusedError && error.refusal === 'DRAINING') {
    return ApplicationFailure.create({ type: FailureType.WorkerStopping, message: error.message, category: 'BENIGN' });
  }
  return processorFailure(error, what);
}

function userFailure(error: unknown, what: string): ApplicationFailure {
  const outOfRange = error instanceof KclError && error.name === FailureType.CheckpointOutOfRange;
  return ApplicationFailure.create({
    type: outOfRange ? FailureType.CheckpointOutOfRange : FailureType.ProcessorFailed,
    message: `${what} threw ${describe(error)}`,
    cause: error instanceof Error ? error : undefined,
    // The same call asks for the same position again: fail once (processRecords then halts or dead-letters; a shutdown
    // fails its consumer) instead of retrying forever under the default unlimited policy.
    ...(outOfRange ? { nonRetryable: true } : {}),
  });
}

/** Activities that call the user's record processor. All but `initializeProcessor` run on the worker the shard is pinned to. */
export function createProcessorActivities({ host, cache, workerQueue }: ProcessorActivityDeps) {
  return {
    /**
     * Creates the shard's processor on this worker and calls its `initialize`; the shard is then pinned here (the
     * returned task queue) until this worker goes away.
     */
    async initializeProcessor(input: {
      ref: ShardRef;
      processorName: string;
      pin: string;
      startingPosition: Checkpoint;
    }): Promise<{ workerQueue: string }> {
      countRetry(input.ref);
      try {
        await withHeartbeats(() => host.initialize(input));
      } catch (error) {
        throw sharedQueueFailure(error, `initialize of processor '${input.processorName}' for ${input.ref.shardId}`);
      }
      return { workerQueue };
    },

    /** Delivers a batch held in this worker's memory to the shard's processor; returns the checkpoint it asked for. */
    async processRecords(input: ProcessRecordsInput): Promise<ProcessOutcome> {
      countRetry(input.ref);
      const cacheExitTime = new Date();
      try {
        return await withHeartbeats(() =>
          host.process(input.ref, input.pin, input.handle, async (processor) => {
            const batch = cache.require(input.handle, input.ref.shardId);
            const last = batch.records.at(-1);
            const lastDelivered = last ? positionOf(last) : input.lastProcessed;
            const checkpointer = new RangeCheckpointer(
              input.ref.shardId,
              input.lastCheckpoint,
              lastDelivered,
              batch.records,
            );
            const started = Date.now();
            try {
              await processor.processRecords({
                records: batch.records,
                millisBehindLatest: batch.millisBehindLatest,
                checkpointer,
                cacheEntryTime: new Date(batch.readAt),
                cacheExitTime,
              });
            } catch (error) {
              const range = last ? ` (records ${formatPosition(batch.records[0])}..${formatPosition(last)})` : '';
              throw processorFailure(
                error,
                `processRecords of ${input.ref.shardId}${range}, attempt ${Context.current().info.attempt},`,
              );
            }
            const durationMs = Date.now() - started;
            const metrics = shardMetrics(input.ref);
            metrics.processRecordsTime(durationMs);
            metrics.recordsProcessed(batch.records.length);
            metrics.bytesProcessed(batch.bytes);
            cache.release(input.handle);
            const requested = checkpointer.checkpointRequested;
            return requested ? { checkpoint: requested, durationMs } : { durationMs };
          }),
        );
      } catch (error) {
        throw processorFailure(error, `processRecords of ${input.ref.shardId}`);
      }
    },

    /**
     * Calls the processor's `shutdown`. TERMINATE and REQUESTED get a working checkpointer (the position it asks for is
     * returned and written by the workflow); ZOMBIE gets none. If this worker does not hold the processor (its worker
     * went away), a fresh one is created and initialized here first, so shutdown is still called.
     */
    async shutdownProcessor(input: ShutdownProcessorInput): Promise<ShutdownOutcome> {
      countRetry(input.ref);
      try {
        return await withHeartbeats(async () => {
          let pin = input.pin;
          if (!host.holds(input.ref, pin)) {
            if (input.reason === 'ZOMBIE') return {};
            pin = `${input.pin}/shutdown`;
            await host.initialize({
              ref: input.ref,
              processorName: input.processorName,
              pin,
              startingPosition: input.startingPosition,
            });
          }
          if (input.reason === 'ZOMBIE') {
            await host.shutdown(input.ref, pin, { reason: 'ZOMBIE' });
            return {};
          }
          const checkpointer = new RangeCheckpointer(input.ref.shardId, input.lastCheckpoint, input.lastProcessed);
          await host.shutdown(input.ref, pin, { reason: input.reason, checkpointer });
          const requested = checkpointer.checkpointRequested;
          return requested ? { checkpoint: requested } : {};
        });
      } catch (error) {
        // On this worker's own queue a refusal moves the shard; on the shared queue the task is retried elsewhere.
        const what = `shutdown(${input.reason}) of ${input.ref.shardId}`;
        throw Context.current().info.taskQueue === workerQueue
          ? processorFailure(error, what)
          : sharedQueueFailure(error, what);
      }
    },
  };
}

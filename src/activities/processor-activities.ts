import type { KinesisClient } from '@aws-sdk/client-kinesis';
import { ApplicationFailure, Context } from '@temporalio/activity';
import type {
  FanOutConsumer,
  LeaseRef,
  LeaseState,
  ProcessOutcome,
  ResumePosition,
  ShardRef,
  ShutdownOutcome,
} from '../consumer-types';
import { KclError } from '../errors';
import { FailureType } from '../failure-types';
import {
  type Checkpoint,
  type ExtendedSequenceNumber,
  formatPosition,
  positionOf,
  SentinelCheckpoint,
} from '../positions';
import type { KinesisRecord, ShutdownReason } from '../record-processor';
import type { BatchCache } from './batch-cache';
import { leaseTableFailure } from './aws-failures';
import { withHeartbeats } from './heartbeat';
import { shardIterator } from './kinesis-activities';
import { countRetry, shardMetrics } from './metrics';
import type { LeaseWriter, OpenLease } from './pin-lease';
import { HostRefusedError, type ProcessorHost, refusalFailure } from './processor-host';
import { RangeCheckpointer } from './range-checkpointer';
import type { ShardLoadMeter } from './shard-load';

export interface ProcessorActivityDeps {
  /** For the iterator `initializeProcessor` gets along (saves the workflow a GetShardIterator activity per pin). */
  kinesis: KinesisClient;
  host: ProcessorHost;
  cache: BatchCache;
  /** Lease writers of the pins on this worker: checkpoints are written here, durable when `checkpoint()` resolves. */
  openLease: OpenLease;
  /** This worker's own task queue: where a shard pinned here sends its reads and batches. */
  workerQueue: string;
  /** Load per pin, for the load reporter. */
  meter?: ShardLoadMeter;
}

export interface ProcessRecordsInput {
  ref: ShardRef;
  pin: string;
  handle: string;
  /** The lease the processor's checkpoints are written to. */
  lease: LeaseRef;
  /** Attempts already made at this batch before this activity (a window that failed on it). @default 0 */
  priorAttempts?: number;
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
  /** The lease the processor's checkpoints are written to (TERMINATE, REQUESTED). */
  lease?: LeaseRef;
  /** With TERMINATE: write SHARD_END (with these children) after the processor's shutdown. */
  shardEnd?: { childShardIds: string[] };
  /** Passed to `initialize` if a fresh processor must be created for the shutdown call. */
  startingPosition: Checkpoint;
  lastCheckpoint?: Checkpoint;
  lastProcessed?: ExtendedSequenceNumber;
}

/** After a failed GetShardIterator at pin time, the pause before the workflow's own attempt (a retry's first interval). */
const ITERATOR_FAULT_PAUSE_MS = 1_000;

/** An iterator taken when a shard was pinned, and the position it is at. */
export interface PinIterator {
  iterator: string;
  obtainedAt: string;
  position: ResumePosition;
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

/** What a processor's error means: ProcessorFailed (retried by policy), or CheckpointOutOfRange (never retried). */
export function userFailure(error: unknown, what: string): ApplicationFailure {
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

/**
 * A checkpoint write that failed while the processor ran: a lost lease ends the consumer (CheckpointConflict, even if the
 * processor caught the error); a DynamoDB fault is retried like any lease-table call.
 */
function writeFailure(error: unknown, shardId: string): ApplicationFailure {
  return leaseTableFailure(error, `checkpointing ${shardId}`);
}

/** A checkpointer whose positions are written to the pin's lease as the processor asks for them. */
function durableCheckpointer(
  shardId: string,
  lease: LeaseWriter,
  lastCheckpoint: Checkpoint | undefined,
  lastDelivered: ExtendedSequenceNumber | undefined,
  records?: readonly KinesisRecord[],
): RangeCheckpointer {
  return new RangeCheckpointer(shardId, lease.checkpoint ?? lastCheckpoint, lastDelivered, records, {
    write: (position) => lease.write(position),
    prepare: (position) => lease.prepare(position),
  });
}

/** Activities that call the user's record processor. All but `initializeProcessor` run on the worker the shard is pinned to. */
export function createProcessorActivities({
  kinesis,
  host,
  cache,
  workerQueue,
  openLease,
  meter,
}: ProcessorActivityDeps) {
  /** The pin's lease writer; a DynamoDB fault opening it (a renewal) is retried, a lost lease is CheckpointConflict. */
  const leaseFor = async (
    ref: ShardRef,
    pin: string,
    lease: LeaseRef,
    lastCheckpoint?: Checkpoint,
    options?: { readPending?: boolean },
  ) => {
    try {
      return await openLease(ref, pin, lease, lastCheckpoint, options);
    } catch (error) {
      throw writeFailure(error, ref.shardId);
    }
  };
  /**
   * The iterator a new pin starts reading with: at the renewed lease's checkpoint when it has one (as the workflow then
   * resumes there), else where the workflow asked. Best effort: a failure leaves it to the workflow's own call.
   */
  const iteratorFor = async (
    ref: ShardRef,
    asked: ResumePosition,
    renewedCheckpoint: Checkpoint | undefined,
    fanOut: FanOutConsumer | undefined,
  ): Promise<PinIterator | undefined> => {
    const position: ResumePosition =
      typeof renewedCheckpoint === 'object'
        ? { type: 'AT_SEQUENCE_NUMBER', sequenceNumber: renewedCheckpoint.sequenceNumber }
        : asked;
    try {
      return { ...(await shardIterator(kinesis, ref, position, fanOut)), position };
    } catch {
      // The workflow asks for one itself next: not at once after a fault (retries keep their spacing).
      const context = Context.current();
      context.heartbeat();
      await context.sleep(ITERATOR_FAULT_PAUSE_MS).catch(() => undefined);
      return undefined;
    }
  };
  return {
    /**
     * Creates the shard's processor on this worker and calls its `initialize`; the shard is then pinned here (the
     * returned task queue) until this worker goes away. With `lease.renew`, the lease is renewed first and its durable
     * checkpoint returned: the worker the shard leaves may have written checkpoints the workflow never heard of. The
     * processor is told the lease's pending checkpoint (one prepared and never committed), read from the table.
     */
    async initializeProcessor(input: {
      ref: ShardRef;
      processorName: string;
      pin: string;
      startingPosition: Checkpoint;
      lease?: LeaseRef;
      /**
       * Where the workflow would read from next, when it has no iterator: one is returned along, at this position (or,
       * after a renewal found a newer checkpoint, at that checkpoint), with the position it is at.
       */
      iteratorAt?: ResumePosition;
      /** Read through enhanced fan-out: the iterator is a fan-out position. */
      fanOut?: FanOutConsumer;
    }): Promise<{ workerQueue: string; lease?: LeaseState; iterator?: PinIterator }> {
      countRetry(input.ref);
      // Renewed before the processor is initialized, so it is told the checkpoint it really starts after.
      const opened = input.lease
        ? await leaseFor(input.ref, input.pin, input.lease, undefined, { readPending: true })
        : undefined;
      const pendingCheckpoint = opened?.pendingCheckpoint;
      // Only a renewal tells the workflow something new (the counter and the durable checkpoint).
      const lease = input.lease?.renew ? opened : undefined;
      try {
        await withHeartbeats(() =>
          host.initialize({
            ...input,
            startingPosition: lease?.checkpoint ?? input.startingPosition,
            ...(pendingCheckpoint !== undefined ? { pendingCheckpoint } : {}),
          }),
        );
      } catch (error) {
        // On this worker's own queue (a planned move here) every refusal is final: the shard falls back to the shared
        // queue at once. On the shared queue a stopping worker's refusal is retried, and another worker takes it.
        const what = `initialize of processor '${input.processorName}' for ${input.ref.shardId}`;
        throw Context.current().info.taskQueue === workerQueue
          ? processorFailure(error, what)
          : sharedQueueFailure(error, what);
      }
      const iterator = input.iteratorAt
        ? await iteratorFor(input.ref, input.iteratorAt, lease?.checkpoint, input.fanOut)
        : undefined;
      const withIterator = iterator ? { iterator } : {};
      if (!lease) return { workerQueue, ...withIterator };
      host.setLeaseCounter(input.ref, input.pin, lease.counter);
      return {
        workerQueue,
        lease: { counter: lease.counter, ...(lease.checkpoint !== undefined ? { checkpoint: lease.checkpoint } : {}) },
        ...withIterator,
      };
    },

    /**
     * Delivers a batch held in this worker's memory to the shard's processor. Its checkpoints are written as it asks
     * for them (fenced on the pin's lease); the outcome reports the last one and the lease counter reached.
     */
    async processRecords(input: ProcessRecordsInput): Promise<ProcessOutcome> {
      countRetry(input.ref, input.priorAttempts);
      const cacheExitTime = new Date();
      try {
        return await withHeartbeats(() =>
          host.process(
            input.ref,
            input.pin,
            input.handle,
            async (processor) => {
              const batch = cache.require(input.handle, input.ref.shardId);
              const last = batch.records.at(-1);
              const lease = await leaseFor(input.ref, input.pin, input.lease, input.lastCheckpoint);
              const checkpointer = durableCheckpointer(
                input.ref.shardId,
                lease,
                input.lastCheckpoint,
                last ? positionOf(last) : input.lastProcessed,
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
                await checkpointer.close();
                if (checkpointer.writeFailure) throw writeFailure(checkpointer.writeFailure, input.ref.shardId);
                const range = last ? ` (records ${formatPosition(batch.records[0])}..${formatPosition(last)})` : '';
                throw processorFailure(
                  error,
                  `processRecords of ${input.ref.shardId}${range}, attempt ${Context.current().info.attempt + (input.priorAttempts ?? 0)},`,
                );
              }
              await checkpointer.close();
              if (checkpointer.writeFailure) throw writeFailure(checkpointer.writeFailure, input.ref.shardId);
              const durationMs = Date.now() - started;
              const metrics = shardMetrics(input.ref);
              metrics.processRecordsTime(durationMs);
              metrics.recordsProcessed(batch.records.length);
              metrics.bytesProcessed(batch.bytes);
              meter?.add(input.ref, input.pin, batch.bytes, batch.records.length);
              for (let i = 0; i < lease.writes; i++) metrics.checkpoint();
              cache.release(input.handle);
              const written = checkpointer.checkpointRequested;
              return {
                durationMs,
                counter: lease.counter,
                ...(lease.writes > 0 ? { checkpoints: lease.writes } : {}),
                ...(written ? { checkpoint: written } : {}),
              };
            },
            Context.current().cancellationSignal,
          ),
        );
      } catch (error) {
        throw processorFailure(error, `processRecords of ${input.ref.shardId}`);
      }
    },

    /**
     * Calls the processor's `shutdown`. TERMINATE and REQUESTED get a working checkpointer (durable when it resolves);
     * ZOMBIE gets none. With `shardEnd`, SHARD_END is written afterwards, so the children never wait on a processor that
     * did not checkpoint. If this worker does not hold the processor (its worker went away), a fresh one is created and
     * initialized here first, so shutdown is still called.
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
              transient: true,
            });
          }
          if (input.reason === 'ZOMBIE' || !input.lease) {
            await host.shutdown(input.ref, pin, { reason: 'ZOMBIE' });
            return {};
          }
          // A retried attempt renews: its first attempt may have written checkpoints, and the instance that knew the
          // counter it reached is gone (shutdown forgets it).
          const retried = Context.current().info.attempt > 1;
          const lease = await leaseFor(
            input.ref,
            pin,
            retried ? { ...input.lease, renew: true } : input.lease,
            input.lastCheckpoint,
          );
          const checkpointer = durableCheckpointer(input.ref.shardId, lease, input.lastCheckpoint, input.lastProcessed);
          await host.shutdown(input.ref, pin, { reason: input.reason, checkpointer });
          await checkpointer.close();
          if (checkpointer.writeFailure) throw writeFailure(checkpointer.writeFailure, input.ref.shardId);
          const written = checkpointer.checkpointRequested;
          if (input.shardEnd) {
            try {
              await lease.write(SentinelCheckpoint.SHARD_END, input.shardEnd.childShardIds);
            } catch (error) {
              throw writeFailure(error, input.ref.shardId);
            }
          }
          return { counter: lease.counter, ...(written ? { checkpoint: written } : {}) };
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

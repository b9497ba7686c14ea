/**
 * The `windowed` execution's activity: on the worker a shard is pinned to, it reads, processes and checkpoints batch
 * after batch in-process, for up to a window's bounds, and reports where it got to. The workflow sees one activity per
 * window and a heartbeat (with the position) every so often, instead of two activities per batch.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { BatchSummary, ChildShard, LeaseRef, ShardRef } from '../consumer-types';
import { CheckpointConflictError } from '../errors';
import { FailureType } from '../failure-types';
import { type Checkpoint, type ExtendedSequenceNumber, formatPosition } from '../positions';
import { advance, type ReadCursor, readCursorOf } from '../shard-cursor';
import { leaseTableFailure } from './aws-failures';
import type { BatchCache } from './batch-cache';
import { countRetry, shardMetrics } from './metrics';
import type { LeaseWriter, OpenLease } from './pin-lease';
import type { ShardLoadMeter } from './shard-load';
import { isFanOutIterator } from './fan-out-reader';
import { drainingFailure, HostRefusedError, type ProcessorHost, refusalFailure } from './processor-host';
import { userFailure } from './processor-activities';
import { RangeCheckpointer } from './range-checkpointer';
import { atQuietTip, pause, type ReadSettings, type ShardReader } from './shard-reader';

export interface WindowActivityDeps {
  host: ProcessorHost;
  cache: BatchCache;
  reader: ShardReader;
  openLease: OpenLease;
  /** Load per pin, for the load reporter. */
  meter?: ShardLoadMeter;
}

export interface WindowInput {
  ref: ShardRef;
  pin: string;
  /** Distinguishes this window from the pin's others (a retried attempt resumes where the failed one got to). */
  windowId: string;
  lease: LeaseRef;
  /** Where reading stands (the iterator must be set). */
  cursor: ReadCursor;
  /** A batch an idle read already brought into this worker's memory: processed first. */
  first?: BatchSummary;
  read: ReadSettings;
  /** Deliver empty batches too (`callProcessRecordsEvenForEmptyRecordList`). */
  keepEmpty: boolean;
  /** The window ends after this long, this many batches, or this long without records. */
  bounds: { durationMs: number; maxBatches: number; maxQuietMs: number };
  /** Heartbeat (with the position) this often; the activity's heartbeat timeout is a little longer. */
  heartbeatEveryMs: number;
  /** A `processRecords` call that takes longer fails the batch (`processTimeoutMs`). */
  processTimeoutMs: number;
}

/** Why a window ended. */
export type WindowEnd =
  'BOUND' | 'QUIET' | 'SHARD_END' | 'STOPPED' | 'EXPIRED_ITERATOR' | 'PROCESSING_FAILED' | 'LEASE_LOST' | 'DRAINING';

export interface WindowResult {
  end: WindowEnd;
  cursor: ReadCursor;
  /** The lease counter after the window's checkpoint writes. */
  counter: number;
  /** Batches processed in the window. */
  batches: number;
  /** SHARD_END: the shard's children. */
  childShards?: ChildShard[];
  /** PROCESSING_FAILED: the batch that failed (kept in this worker's memory), the error, and whether to retry it. */
  failed?: { batch: BatchSummary; error: string; retryable: boolean };
}

/** Sent with each heartbeat: shown in the Temporal UI (pending activity) and read by `temporal-kcl status`. */
export interface WindowHeartbeat {
  windowId: string;
  lastProcessed?: ExtendedSequenceNumber;
  checkpoint?: Checkpoint;
  millisBehindLatest?: number;
  recordsProcessed: number;
  batches: number;
  at: string;
}

/** Where the windows of this worker got to, by window: a retried attempt (same worker) carries on from there. */
const MAX_REMEMBERED = 10_000;

/** The processor threw on a batch of the window: the window ends, and the workflow retries the batch by policy. */
class BatchFailed extends Error {
  constructor(
    message: string,
    /** False when trying the batch again cannot help (an out-of-range checkpoint): HALT or dead-letter at once. */
    readonly retryable = true,
  ) {
    super(message);
  }
}

export function createWindowActivities({ host, cache, reader, openLease, meter }: WindowActivityDeps) {
  const progress = new Map<string, { cursor: ReadCursor; firstDone: boolean }>();

  async function runWindow(input: WindowInput): Promise<WindowResult> {
    const { ref, pin } = input;
    const key = `${pin}#${input.windowId}`;
    const remembered = progress.get(key);
    const cursor = readCursorOf(remembered?.cursor ?? input.cursor);
    let first = remembered?.firstDone ? undefined : input.first;
    const stop = host.stopSignal(ref, pin);
    let lease: LeaseWriter;
    try {
      lease = await openLease(ref, pin, input.lease, cursor.checkpoint);
    } catch (error) {
      if (error instanceof CheckpointConflictError) {
        return { end: 'LEASE_LOST', cursor, counter: input.lease.counter, batches: 0 };
      }
      throw leaseTableFailure(error, `checkpointing ${ref.shardId}`);
    }
    const context = Context.current();
    const startedAt = Date.now();
    let batches = 0;
    let quietSince: number | undefined;
    const remember = () => {
      progress.set(key, { cursor: readCursorOf(cursor), firstDone: first === undefined });
      while (progress.size > MAX_REMEMBERED) progress.delete(progress.keys().next().value as string);
    };
    const beat = () =>
      context.heartbeat({
        windowId: input.windowId,
        ...(cursor.lastProcessed ? { lastProcessed: cursor.lastProcessed } : {}),
        ...(cursor.checkpoint !== undefined ? { checkpoint: cursor.checkpoint } : {}),
        ...(cursor.millisBehindLatest !== undefined ? { millisBehindLatest: cursor.millisBehindLatest } : {}),
        recordsProcessed: cursor.counters.recordsProcessed,
        batches: cursor.counters.batches,
        at: new Date().toISOString(),
      } satisfies WindowHeartbeat);
    // Heartbeats on a timer, not per batch: a long processRecords or a quiet wait must not look like a dead worker, and
    // each heartbeat that reaches the server is a Temporal action.
    const heartbeats = setInterval(beat, input.heartbeatEveryMs);
    const done = (end: WindowEnd, extra: Partial<WindowResult> = {}): WindowResult => {
      progress.delete(key);
      return { end, cursor, counter: lease.counter, batches, ...extra };
    };
    try {
      for (;;) {
        if (host.isDraining) return done('DRAINING');
        if (stop.aborted) return done('STOPPED');
        if (batches >= input.bounds.maxBatches || Date.now() - startedAt >= input.bounds.durationMs) {
          return done('BOUND');
        }
        let batch: BatchSummary;
        if (first) {
          batch = first;
        } else {
          if (cursor.iterator === undefined) return done('EXPIRED_ITERATOR');
          try {
            const read = await reader.read(ref, cursor.iterator, input.read, cursor.skipUntil, stop);
            const keep = read.records.length > 0 || input.keepEmpty;
            const handle = keep
              ? cache.put({
                  records: read.records,
                  bytes: read.summary.bytes,
                  readAt: read.summary.readAt,
                  millisBehindLatest: read.summary.millisBehindLatest,
                })
              : '';
            batch = { handle, ...read.summary };
          } catch (error) {
            if (error instanceof ApplicationFailure && error.type === FailureType.ExpiredIterator) {
              cursor.counters.expiredIterators++;
              cursor.iterator = undefined;
              return done('EXPIRED_ITERATOR');
            }
            remember();
            throw error; // throttling and other transient faults: the retry policy backs off, the retry carries on here
          }
        }
        const quiet = atQuietTip(batch, input.read.idlePollMs ?? 1_000);
        if (batch.recordCount > 0 || input.keepEmpty) {
          let outcome: 'OK' | { error: string; retryable: boolean };
          try {
            outcome = await deliver(input, batch, cursor, lease);
          } catch (error) {
            // Another owner took the lease: report where this consumer got to (its last checkpoint) and end.
            if (error instanceof ApplicationFailure && error.type === FailureType.CheckpointConflict) {
              return done('LEASE_LOST');
            }
            remember();
            throw error;
          }
          if (outcome !== 'OK') {
            remember();
            return done('PROCESSING_FAILED', { failed: { batch, ...outcome } });
          }
        }
        first = undefined;
        advance(cursor, batch);
        if (lease.checkpoint !== undefined) cursor.checkpoint = lease.checkpoint;
        batches++;
        remember();
        if (batch.nextIterator === undefined) return done('SHARD_END', { childShards: batch.childShards ?? [] });
        if (!quiet) {
          quietSince = undefined;
          continue;
        }
        quietSince ??= Date.now();
        if (Date.now() - quietSince >= input.bounds.maxQuietMs) return done('QUIET');
        // A push stream's read waited for an event itself: there is nothing to poll.
        if (!isFanOutIterator(batch.nextIterator)) await pause(input.read.idlePollMs ?? 1_000, stop);
      }
    } finally {
      clearInterval(heartbeats);
    }
  }

  /** Delivers one batch to the processor (serialized with the pin's other calls); its checkpoints are durable. */
  async function deliver(
    input: WindowInput,
    batch: BatchSummary,
    cursor: ReadCursor,
    lease: LeaseWriter,
  ): Promise<'OK' | { error: string; retryable: boolean }> {
    const { ref, pin } = input;
    // A processRecords that outlives processTimeoutMs fails the batch, as its start-to-close timeout does per-batch.
    const timeout = new AbortController();
    const timer = setTimeout(
      () =>
        timeout.abort(
          new BatchFailed(`processRecords of ${ref.shardId} did not return within ${input.processTimeoutMs} ms`),
        ),
      input.processTimeoutMs,
    );
    try {
      await host.process(
        ref,
        pin,
        batch.handle,
        async (processor) => {
          const cached = cache.require(batch.handle, ref.shardId);
          const last = cached.records.at(-1);
          const checkpointer = new RangeCheckpointer(
            ref.shardId,
            lease.checkpoint ?? cursor.checkpoint,
            last ? batch.lastDelivered : cursor.lastProcessed,
            cached.records,
            { write: (position) => lease.write(position), prepare: (position) => lease.prepare(position) },
          );
          const started = Date.now();
          const writesBefore = lease.writes;
          let failure: ApplicationFailure | undefined;
          try {
            await processor.processRecords({
              records: cached.records,
              millisBehindLatest: cached.millisBehindLatest,
              checkpointer,
              cacheEntryTime: new Date(cached.readAt),
              cacheExitTime: new Date(started),
            });
          } catch (error) {
            const range = last ? ` (records ${formatPosition(cached.records[0])}..${formatPosition(last)})` : '';
            failure = userFailure(error, `processRecords of ${ref.shardId}${range}`);
          }
          await checkpointer.close();
          if (checkpointer.writeFailure)
            throw leaseTableFailure(checkpointer.writeFailure, `checkpointing ${ref.shardId}`);
          cursor.counters.checkpoints += lease.writes - writesBefore;
          // Thrown, not returned: the host remembers completed batches, and a failed one must be deliverable again.
          if (failure !== undefined) throw new BatchFailed(failure.message, !failure.nonRetryable);
          const metrics = shardMetrics(ref);
          metrics.processRecordsTime(Date.now() - started);
          metrics.recordsProcessed(cached.records.length);
          metrics.bytesProcessed(cached.bytes);
          meter?.add(ref, pin, cached.bytes, cached.records.length);
          for (let i = writesBefore; i < lease.writes; i++) metrics.checkpoint();
          cache.release(batch.handle);
          return { durationMs: Date.now() - started };
        },
        timeout.signal,
      );
    } catch (error) {
      if (error instanceof BatchFailed) return { error: error.message, retryable: error.retryable };
      throw error;
    } finally {
      clearTimeout(timer);
    }
    return 'OK';
  }

  return {
    /** Runs batches in-process until the window's bounds, shard end, a failure or a stop (see {@link WindowEnd}). */
    async processWindow(input: WindowInput): Promise<WindowResult> {
      countRetry(input.ref);
      if (host.isDraining) throw drainingFailure(input.ref);
      try {
        return await runWindow(input);
      } catch (error) {
        throw error instanceof HostRefusedError ? refusalFailure(error) : error;
      }
    },

    /** Ends the pin's running window (it returns STOPPED with its position): the consumer is stopping. */
    async stopWindow(input: { ref: ShardRef; pin: string }): Promise<boolean> {
      return host.requestStop(input.ref, input.pin);
    },
  };
}

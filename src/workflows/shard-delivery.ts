/**
 * Delivering one batch to the processor (KCL's ProcessTask) as a durable step: `processRecords` on the shard's worker
 * with the processing retry policy, then, if it keeps failing, HALT (wait for a `retry` signal) or dead-letter and go
 * on. Never skips silently. The per-batch loop delivers every batch this way; the windowed loop only a batch its window
 * failed on.
 */
import { condition, log } from '@temporalio/workflow';
import type { BatchSummary, DeadLetterDestination } from '../consumer-types';
import { ConsumerState } from '../consumer-types';
import type { ExtendedSequenceNumber } from '../positions';
import { advance, type Pin, recordDeadLetter } from '../shard-cursor';
import { processingAttemptsLeft } from './shard-activities';
import type { ShardContext } from './shard-context';
import { classify, Failure, failureMessage } from './shard-failures';

/**
 * DELIVERED: the cursor moved past the batch. RETRY: read the batch again (same iterator). STOP: a stop came while
 * halted. ZOMBIE: the lease was lost.
 */
export type Delivery = 'DELIVERED' | 'RETRY' | 'STOP' | 'ZOMBIE';

/**
 * Processes the batch (if it has records, or empty batches are delivered), and moves the cursor past it. `failed`: a
 * window already tried it once and failed with this error; the retry policy counts that attempt.
 */
export async function deliver(
  ctx: ShardContext,
  p: Pin,
  batch: BatchSummary,
  failed?: { error: string; retryable?: boolean },
): Promise<Delivery> {
  const c = ctx.c;
  const priorAttempts = failed ? 1 : 0;
  let deadLettered: { records: number; bytes: number } | undefined;
  // (`retryable` is absent from the results of windows that ran before it existed: those were retried.)
  if (failed && (failed.retryable === false || processingAttemptsLeft(ctx.options, priorAttempts) === 0)) {
    // The window's attempt was the last one processingRetry allows, or another cannot help.
    const handled = await afterFailure(ctx, p, batch, failed.error);
    if (typeof handled === 'string') return handled;
    deadLettered = handled;
  } else if (batch.recordCount > 0 || ctx.options.callProcessRecordsEvenForEmptyRecordList) {
    try {
      const outcome = await ctx.pinned(p, priorAttempts).process.processRecords({
        ref: ctx.ref,
        pin: p.id,
        handle: batch.handle,
        lease: ctx.lease(),
        ...(priorAttempts > 0 ? { priorAttempts } : {}),
        ...(c.checkpoint !== undefined ? { lastCheckpoint: c.checkpoint } : {}),
        ...(c.lastProcessed ? { lastProcessed: c.lastProcessed } : {}),
      });
      ctx.adoptLease(outcome);
      c.counters.checkpoints += outcome.checkpoints ?? 0;
    } catch (error) {
      switch (classify(error, 'process')) {
        case Failure.BATCH_LOST:
          return 'RETRY';
        case Failure.WORKER_LOST:
          ctx.unpin(failureMessage(error));
          return 'RETRY';
        case Failure.DRAINING:
          ctx.workerStopping(failureMessage(error)); // the batch is read again elsewhere
          return 'RETRY';
        case Failure.LEASE_LOST:
          return 'ZOMBIE';
        case Failure.PROCESSING_FAILED:
          break;
        default:
          throw error;
      }
      const handled = await afterFailure(ctx, p, batch, failureMessage(error));
      if (typeof handled === 'string') return handled;
      deadLettered = handled;
    }
  }
  advance(c, batch, deadLettered);
  ctx.showDetails();
  return 'DELIVERED';
}

/** processingRetry's attempts are spent: halt, or dead-letter (the records that were dead-lettered are returned). */
async function afterFailure(
  ctx: ShardContext,
  p: Pin,
  batch: BatchSummary,
  message: string,
): Promise<{ records: number; bytes: number } | 'RETRY' | 'STOP' | 'ZOMBIE'> {
  const { options } = ctx;
  if (options.onProcessingFailure === 'HALT' || !options.deadLetter) {
    return (await halt(ctx, message)) ? 'RETRY' : 'STOP';
  }
  return deadLetter(ctx, p, batch, message, options.deadLetter);
}

/**
 * HALTED: the batch keeps failing. Waits for a `retry` signal (true: try the batch again) or a stop (false). Nothing is
 * skipped meanwhile; the reason shows in the progress query and the UI.
 */
export async function halt(ctx: ShardContext, reason: string): Promise<boolean> {
  log.error('processing keeps failing; shard halted until a retry signal', { shardId: ctx.ref.shardId, reason });
  ctx.haltedReason = reason;
  ctx.setState(ConsumerState.HALTED);
  ctx.retryRequested = false;
  await condition(() => ctx.retryRequested || ctx.stopRequested);
  ctx.haltedReason = undefined;
  ctx.setState(ConsumerState.PROCESSING);
  return ctx.retryRequested && !ctx.stopRequested;
}

/** Sends a batch that kept failing to the dead-letter destination (whole, or only the records that fail alone). */
async function deadLetter(
  ctx: ShardContext,
  p: Pin,
  batch: BatchSummary,
  error: string,
  destination: DeadLetterDestination,
): Promise<{ records: number; bytes: number } | 'RETRY' | 'ZOMBIE'> {
  const c = ctx.c;
  let outcome;
  try {
    outcome = await ctx.pinned(p).deadLetter.deadLetterBatch({
      ref: ctx.ref,
      pin: p.id,
      handle: batch.handle,
      destination,
      granularity: ctx.options.deadLetterGranularity,
      error,
      ...(c.checkpoint !== undefined ? { lastCheckpoint: c.checkpoint } : {}),
    });
  } catch (failure) {
    switch (classify(failure, 'read')) {
      case Failure.BATCH_LOST:
        return 'RETRY';
      case Failure.WORKER_LOST:
        ctx.unpin(failureMessage(failure));
        return 'RETRY';
      case Failure.DRAINING:
        ctx.workerStopping(failureMessage(failure));
        return 'RETRY';
      default:
        throw failure;
    }
  }
  ctx.adoptLease({ counter: outcome.counter });
  c.counters.deadLetteredRecords += outcome.deadLettered;
  if (outcome.deadLettered > 0) c.counters.deadLetteredBatches++;
  if (outcome.first && outcome.last) {
    recordDeadLetter(c, { first: outcome.first, last: outcome.last, records: outcome.deadLettered, error });
  }
  log.warn('dead-lettered records of a failing batch', {
    shardId: ctx.ref.shardId,
    deadLettered: outcome.deadLettered,
    delivered: outcome.delivered,
  });
  if (outcome.checkpoint && !(await writeCheckpoint(ctx, outcome.checkpoint))) return 'ZOMBIE';
  return { records: outcome.deadLettered, bytes: outcome.deadLetteredBytes };
}

/** The workflow's own checkpoint write, fenced on owner and counter; false if the lease was lost. */
async function writeCheckpoint(ctx: ShardContext, checkpoint: ExtendedSequenceNumber): Promise<boolean> {
  const c = ctx.c;
  try {
    const written = await ctx.checkpoints.checkpoint({
      tableName: ctx.tableName,
      ref: ctx.ref,
      owner: c.owner,
      counter: c.counter,
      checkpoint,
    });
    c.counter = written.counter;
    c.checkpoint = checkpoint;
    c.counters.checkpoints++;
    return true;
  } catch (error) {
    if (classify(error, 'control') === Failure.LEASE_LOST) {
      log.warn('lease lost', { shardId: ctx.ref.shardId, error: failureMessage(error) });
      return false;
    }
    throw error;
  }
}

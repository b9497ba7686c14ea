/**
 * The `per-batch` execution: every Kinesis batch is a durable step of the workflow — a read on the shard's worker, then
 * `processRecords` there (its checkpoints are written on the worker). About two Temporal actions a batch; a quiet shard
 * waits inside its read (no workflow timer), about one action per `maxIdleWaitMs`.
 */
import { CancellationScope, condition, patched, workflowInfo } from '@temporalio/workflow';
import type { GetRecordsInput } from '../activities';
import type { BatchSummary, ShardConsumerResult } from '../consumer-types';
import type { ExtendedSequenceNumber } from '../positions';
import { type Pin, skipAfter } from '../shard-cursor';
import { idleWaitMs, readActivity } from './shard-activities';
import type { ShardContext } from './shard-context';
import { deliver } from './shard-delivery';
import { classify, Failure, failureMessage } from './shard-failures';
import { handOff } from './shard-handoff';
import { finish, zombie } from './shard-shutdown';
import { freshIterator } from './shard-start';

/** What one read activity needs: the iterator, what to drop from what it returns, and how long it may wait. */
export function readInput(
  ctx: ShardContext,
  pin: Pin,
  iterator: string,
  skipUntil: ExtendedSequenceNumber | undefined,
  waitMs: number,
): GetRecordsInput {
  const { options } = ctx;
  return {
    ref: ctx.ref,
    pin: pin.id,
    iterator,
    maxRecords: options.maxRecords,
    minIntervalMs: options.minTimeBetweenReadsMs,
    readAhead: options.prefetch,
    idlePollMs: Math.max(options.idleTimeBetweenReadsMs, 1),
    ...(waitMs > 0 ? { idleWaitMs: waitMs } : {}),
    ...(options.callProcessRecordsEvenForEmptyRecordList ? { keepEmpty: true } : {}),
    ...(ctx.hashKeyRange ? { hashKeyRange: ctx.hashKeyRange } : {}),
    ...(skipUntil ? { skipUntil } : {}),
  };
}

/**
 * One read from the cursor's iterator; a quiet shard's read waits on the worker. A stop or a move ends the wait at
 * once: the read is cancelled and 'INTERRUPTED' returned (a move's shutdown on the worker also ends the wait there).
 */
export async function readBatch(ctx: ShardContext, p: Pin, iterator: string): Promise<BatchSummary | 'INTERRUPTED'> {
  const waitMs = idleWaitMs(ctx.options, ctx.c.quietReads ?? 0);
  const read = readActivity(ctx.options, p.workerQueue, ctx.ref.shardId, waitMs);
  if (waitMs === 0) return read(readInput(ctx, p, iterator, ctx.c.skipUntil, 0));
  const scope = new CancellationScope();
  const waiting = scope.run(() => read(readInput(ctx, p, iterator, ctx.c.skipUntil, waitMs)));
  const interrupted = () => ctx.stopRequested || ctx.moveRequested();
  const stopped = await Promise.race([waiting.then(() => false), condition(interrupted).then(() => true)]);
  // (`condition` resolves to nothing: before 'interrupt-waits' the race never said "stopped", and a stop or a move
  // waited for the read's end. Runs recorded then replay that way.)
  if (stopped && interrupted() && patched('interrupt-waits')) {
    scope.cancel();
    waiting.catch(() => undefined);
    return 'INTERRUPTED';
  }
  return waiting;
}

/** True when the read found nothing at the shard's tip: the next read waits for records. */
export function quiet(ctx: ShardContext, batch: BatchSummary): boolean {
  return (
    batch.kinesisRecordCount === 0 &&
    batch.millisBehindLatest < Math.max(ctx.options.idleTimeBetweenReadsMs, 1) &&
    batch.nextIterator !== undefined
  );
}

/**
 * A failed read: an expired iterator is replaced (resuming right after the last processed record); a worker that is
 * gone moves the shard. Anything else fails the workflow.
 */
export function onReadFailure(ctx: ShardContext, error: unknown): void {
  const c = ctx.c;
  switch (classify(error, 'read')) {
    case Failure.EXPIRED_ITERATOR:
      c.counters.expiredIterators++;
      c.iterator = undefined;
      return;
    case Failure.WORKER_LOST:
      ctx.unpin(failureMessage(error));
      return;
    case Failure.DRAINING:
      ctx.workerStopping(failureMessage(error));
      return;
    default:
      throw error;
  }
}

export async function runPerBatch(ctx: ShardContext): Promise<ShardConsumerResult | 'CONTINUE_AS_NEW'> {
  const { options } = ctx;
  const c = ctx.c;
  let pending: { pinId: string; iterator: string; read: Promise<BatchSummary> } | undefined;
  let batchesThisRun = 0;
  for (;;) {
    if (ctx.stopRequested) return finish(ctx, 'REQUESTED');
    if (ctx.moveRequested()) {
      // A batch boundary: nothing is in flight on the old worker but a prefetched read, whose batch is dropped (it is
      // read again, after the checkpoint the old processor writes in its shutdown).
      if (pending) await pending.read.catch(() => undefined);
      pending = undefined;
      if ((await handOff(ctx)) === 'ZOMBIE') return zombie(ctx);
      continue;
    }
    if (ctx.runIsFull(batchesThisRun) || workflowInfo().continueAsNewSuggested) {
      if (pending) await pending.read.catch(() => undefined);
      return 'CONTINUE_AS_NEW';
    }
    const p = await ctx.pin();
    if (c.iterator === undefined) await freshIterator(ctx);
    const iterator = c.iterator!;

    let batch: BatchSummary;
    try {
      const read =
        pending && pending.pinId === p.id && pending.iterator === iterator ? pending.read : readBatch(ctx, p, iterator);
      pending = undefined;
      const got = await read;
      if (got === 'INTERRUPTED') continue; // a stop or a move: the loop's head acts on it
      batch = got;
    } catch (error) {
      pending = undefined;
      onReadFailure(ctx, error);
      continue;
    }

    const atShardEnd = batch.nextIterator === undefined;
    const isQuiet = quiet(ctx, batch);
    c.quietReads = isQuiet ? (c.quietReads ?? 0) + 1 : 0;
    if (options.prefetch && !atShardEnd && !isQuiet && !ctx.runIsFull(batchesThisRun + 1)) {
      // Prefetch: read the next batch while this one is processed (delivery order is unchanged).
      const next = batch.nextIterator!;
      const read = readActivity(
        options,
        p.workerQueue,
        ctx.ref.shardId,
        0,
      )(readInput(ctx, p, next, skipAfter(c.skipUntil, batch), 0));
      read.catch(() => undefined);
      pending = { pinId: p.id, iterator: next, read };
    }

    const delivered = await deliver(ctx, p, batch);
    if (delivered === 'ZOMBIE') return zombie(ctx);
    if (delivered === 'STOP') return finish(ctx, 'REQUESTED');
    if (delivered === 'RETRY') {
      pending = undefined;
      continue;
    }
    batchesThisRun++;
    if (atShardEnd) return finish(ctx, 'TERMINATE', batch.childShards ?? []);
  }
}

/**
 * The `windowed` execution: one activity on the shard's worker (a window) reads, processes and checkpoints batch after
 * batch in-process, and reports where it got to when it ends (a time or batch bound, shard end, a failure, a stop, or a
 * quiet shard). While the shard is quiet, the workflow waits for records with the same reads as `per-batch`; the batch
 * that ends the wait opens the next window. A batch a window fails on is delivered as a durable step, with the
 * processing retry policy, HALT and dead-letter of `per-batch`.
 */
import { condition, log, patched, workflowInfo } from '@temporalio/workflow';
import type { BatchSummary, ShardConsumerResult } from '../consumer-types';
import { advance, type Pin, readCursorOf } from '../shard-cursor';
import type { WindowResult } from '../activities';
import { windowActivities, windowHeartbeatEveryMs } from './shard-activities';
import type { ShardContext } from './shard-context';
import { deliver } from './shard-delivery';
import { classify, Failure, failureMessage } from './shard-failures';
import { onReadFailure, quiet, readBatch } from './shard-per-batch';
import { handOff } from './shard-handoff';
import { finish, zombie } from './shard-shutdown';
import { freshIterator } from './shard-start';

/** Runs one window, ending it early (through the worker) when a stop arrives. */
async function runWindow(ctx: ShardContext, p: Pin, first: BatchSummary | undefined): Promise<WindowResult> {
  const { options } = ctx;
  const c = ctx.c;
  const activities = windowActivities(options, p.workerQueue, ctx.ref.shardId);
  c.windows = (c.windows ?? 0) + 1;
  const window = activities.window({
    ref: ctx.ref,
    pin: p.id,
    windowId: `${c.run}.${c.windows}`,
    lease: ctx.lease(),
    cursor: readCursorOf(c),
    ...(first ? { first } : {}),
    read: {
      maxRecords: options.maxRecords,
      minIntervalMs: options.minTimeBetweenReadsMs,
      readAhead: options.prefetch,
      idlePollMs: Math.max(options.idleTimeBetweenReadsMs, 1),
      ...(ctx.hashKeyRange ? { hashKeyRange: ctx.hashKeyRange } : {}),
    },
    keepEmpty: options.callProcessRecordsEvenForEmptyRecordList,
    bounds: {
      durationMs: options.windowDurationMs,
      maxBatches: options.windowMaxBatches,
      maxQuietMs: options.maxIdleWaitMs,
    },
    heartbeatEveryMs: windowHeartbeatEveryMs(options),
    processTimeoutMs: options.processTimeoutMs,
  });
  const interrupted = () => ctx.stopRequested || ctx.moveRequested();
  const stopped = await Promise.race([window.then(() => false), condition(interrupted).then(() => true)]);
  // (`condition` resolves to nothing: before 'interrupt-waits' the race never said "stopped", and a stop or a move
  // waited for the window's end, up to windowDurationMs. Runs recorded then replay that way.)
  if (stopped && interrupted() && patched('interrupt-waits')) {
    // A stop or a move: the window stops where it is (after the batch in hand) and reports it; if its worker is gone,
    // its heartbeat timeout ends it.
    await activities.stop({ ref: ctx.ref, pin: p.id }).catch((error: unknown) => {
      log.warn('could not stop the window on its worker', { shardId: ctx.ref.shardId, error: String(error) });
    });
  }
  return window;
}

export async function runWindowed(ctx: ShardContext): Promise<ShardConsumerResult | 'CONTINUE_AS_NEW'> {
  const c = ctx.c;
  let first: BatchSummary | undefined;
  let stepsThisRun = 0;
  for (;;) {
    if (ctx.stopRequested) return finish(ctx, 'REQUESTED');
    if (ctx.moveRequested()) {
      // Between windows nothing runs on the old worker. A batch read to open the next window is dropped: it is read
      // again after the checkpoint the old processor writes in its shutdown.
      first = undefined;
      if ((await handOff(ctx)) === 'ZOMBIE') return zombie(ctx);
      continue;
    }
    if (!first && (ctx.runIsFull(stepsThisRun) || workflowInfo().continueAsNewSuggested)) {
      return 'CONTINUE_AS_NEW';
    }
    stepsThisRun++;
    const p = await ctx.pin();
    if (c.iterator === undefined) {
      first = undefined;
      await freshIterator(ctx);
    }

    if (!first && (c.quietReads ?? 0) > 0) {
      // The shard went quiet: wait for records without a window (no heartbeats while nothing happens).
      let batch: BatchSummary | 'INTERRUPTED';
      try {
        batch = await readBatch(ctx, p, c.iterator!);
      } catch (error) {
        onReadFailure(ctx, error);
        continue;
      }
      if (batch === 'INTERRUPTED') continue; // a stop or a move: the loop's head acts on it
      if (quiet(ctx, batch)) {
        advance(c, batch);
        c.quietReads = (c.quietReads ?? 0) + 1;
        continue;
      }
      first = batch; // delivered by the window, which starts at its iterator
    }

    let window: WindowResult;
    try {
      window = await runWindow(ctx, p, first);
    } catch (error) {
      switch (classify(error, 'window')) {
        case Failure.LEASE_LOST:
          return zombie(ctx);
        case Failure.BATCH_LOST:
          first = undefined; // read it again
          continue;
        case Failure.WORKER_LOST:
          first = undefined;
          ctx.unpin(failureMessage(error));
          continue;
        case Failure.DRAINING:
          first = undefined;
          ctx.workerStopping(failureMessage(error));
          continue;
        default:
          throw error;
      }
    }
    first = undefined;
    Object.assign(c, window.cursor);
    // Fields a window cleared are absent from its (JSON) result, not undefined.
    c.iterator = window.cursor.iterator;
    c.skipUntil = window.cursor.skipUntil;
    ctx.adoptLease({ counter: window.counter }, true);
    c.quietReads = 0;
    ctx.showDetails();
    switch (window.end) {
      case 'SHARD_END':
        return finish(ctx, 'TERMINATE', window.childShards ?? []);
      case 'LEASE_LOST':
        return zombie(ctx);
      case 'QUIET':
        c.quietReads = 1;
        break;
      case 'DRAINING':
        ctx.workerStopping('WorkerDraining'); // handed over at the loop's head: shutdown(REQUESTED) on the stopping worker
        break;
      case 'PROCESSING_FAILED': {
        const failed = window.failed!;
        log.warn('a window failed on a batch; delivering it as a durable step', {
          shardId: ctx.ref.shardId,
          error: failed.error,
        });
        const delivered = await deliver(ctx, p, failed.batch, failed);
        if (delivered === 'ZOMBIE') return zombie(ctx);
        if (delivered === 'STOP') return finish(ctx, 'REQUESTED');
        if (delivered === 'DELIVERED' && failed.batch.nextIterator === undefined) {
          return finish(ctx, 'TERMINATE', failed.batch.childShards ?? []);
        }
        break;
      }
      case 'BOUND':
      case 'STOPPED':
      case 'EXPIRED_ITERATOR':
        break;
    }
  }
}

/**
 * A planned move of a shard to another worker (balance, capacity, or its worker stopping): graceful, as KCL 3's
 * graceful lease handoff, but with nothing delivered twice. At a batch boundary (nothing in flight on the old worker),
 * the processor there gets `shutdown(REQUESTED)` with a working checkpointer whose checkpoints are durable when they
 * resolve; then the shard is unpinned keeping its lease, and the next pin (on the target, else any worker) renews the
 * lease — fencing out the old worker — and initializes a new processor at the checkpoint the old one wrote.
 */
import { getExternalWorkflowHandle, log } from '@temporalio/workflow';
import type { ShardContext } from './shard-context';
import { classify, Failure, failureMessage } from './shard-failures';
import { workerLeavingSignal } from './stream-consumer-signals';

/**
 * Hands the shard over. MOVED: unpinned after the old processor's shutdown(REQUESTED) (or after its worker turned out to
 * be gone: then as a failover, from the durable checkpoint). ZOMBIE: the lease was lost meanwhile.
 */
export async function handOff(ctx: ShardContext): Promise<'MOVED' | 'ZOMBIE'> {
  const c = ctx.c;
  const p = c.pin;
  const why = ctx.leaving ?? ctx.move?.reason ?? 'BALANCE';
  if (!p) return 'MOVED';
  if (why === 'DRAINING' && ctx.input.streamWorkflowId) {
    // Placement must stop choosing the stopping worker at once (one signal per shard drained; not awaited).
    void getExternalWorkflowHandle(ctx.input.streamWorkflowId)
      .signal(workerLeavingSignal, { workerQueue: p.workerQueue })
      .catch((error: unknown) => log.warn('could not tell the stream consumer', { error: String(error) }));
  }
  log.info('handing the shard over to another worker', {
    shardId: ctx.ref.shardId,
    reason: why,
    from: p.workerQueue,
    to: ctx.move?.to ?? 'any worker',
  });
  try {
    const outcome = await ctx.pinned(p).process.shutdownProcessor({
      ref: ctx.ref,
      processorName: ctx.input.processor,
      pin: p.id,
      reason: 'REQUESTED',
      lease: ctx.lease(),
      startingPosition: c.checkpoint ?? c.startingPosition,
      ...(c.checkpoint !== undefined ? { lastCheckpoint: c.checkpoint } : {}),
      ...(c.lastProcessed ? { lastProcessed: c.lastProcessed } : {}),
    });
    ctx.adoptLease(outcome);
    if (outcome.checkpoint) c.counters.checkpoints++;
  } catch (error) {
    switch (classify(error, 'shutdown')) {
      case Failure.LEASE_LOST:
        return 'ZOMBIE';
      case Failure.WORKER_LOST:
      case Failure.DRAINING:
      case Failure.PROCESSING_FAILED:
        // Its worker is gone, or the processor's shutdown threw: KCL's redelivery from the durable checkpoint.
        ctx.unpin(`handoff from ${p.workerQueue} failed: ${failureMessage(error)}`);
        return 'MOVED';
      default:
        throw error;
    }
  }
  // The workflow keeps the lease; the next pin renews it (the counter moves, so a straggler of the old pin is fenced).
  c.counters.handoffs = (c.counters.handoffs ?? 0) + 1;
  ctx.detach();
  if (ctx.move?.to === p.workerQueue) ctx.move = undefined;
  ctx.showDetails();
  return 'MOVED';
}

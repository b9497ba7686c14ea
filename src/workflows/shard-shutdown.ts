/**
 * The last phase of a shard's life (KCL's ShutdownTask): the processor's `shutdown` with a working checkpointer
 * (TERMINATE at shard end, REQUESTED on a stop) or without one (ZOMBIE: the lease was lost), SHARD_END for the children,
 * the lease given back, and the stream consumer told.
 */
import { getExternalWorkflowHandle, log } from '@temporalio/workflow';
import type { ChildShard, ShardConsumerResult, ShutdownOutcome } from '../consumer-types';
import { ConsumerState } from '../consumer-types';
import { SentinelCheckpoint } from '../positions';
import { emptyCounters } from '../shard-cursor';
import type { ShardContext } from './shard-context';
import { classify, Failure } from './shard-failures';
import { shardEndedSignal } from './stream-consumer-signals';

/** Ends the consumer: tells the stream consumer (if any) and returns the result. */
export async function result(
  ctx: ShardContext,
  reason: ShardConsumerResult['reason'],
  childShards: ChildShard[] = [],
): Promise<ShardConsumerResult> {
  ctx.setState(ConsumerState.ENDED);
  const { input, cursor } = ctx;
  if (input.streamWorkflowId) {
    try {
      await getExternalWorkflowHandle(input.streamWorkflowId).signal(shardEndedSignal, {
        shardId: ctx.ref.shardId,
        reason,
        childShards,
      });
    } catch (error) {
      // The stream consumer may be gone (stopped, or never existed): its periodic shard listing catches up.
      log.warn('could not tell the stream consumer that this shard ended', { error: String(error) });
    }
  }
  return {
    ...ctx.ref,
    reason,
    ...(cursor?.checkpoint !== undefined ? { checkpoint: cursor.checkpoint } : {}),
    ...(cursor?.lastProcessed ? { lastProcessed: cursor.lastProcessed } : {}),
    counters: cursor?.counters ?? emptyCounters(),
    childShards,
  };
}

/** Ends as a zombie: the processor is told (without a checkpointer) and nothing more is written. */
export async function zombie(ctx: ShardContext): Promise<ShardConsumerResult> {
  ctx.setState(ConsumerState.SHUTTING_DOWN);
  const c = ctx.cursor;
  if (c?.pin) {
    await ctx
      .pinned(c.pin)
      .process.shutdownProcessor({
        ref: ctx.ref,
        processorName: ctx.input.processor,
        pin: c.pin.id,
        reason: 'ZOMBIE',
        startingPosition: c.startingPosition,
      })
      .catch((error: unknown) =>
        log.warn('zombie shutdown failed', { shardId: ctx.ref.shardId, error: String(error) }),
      );
  }
  return result(ctx, 'ZOMBIE');
}

/**
 * shutdown(TERMINATE | REQUESTED) with a working checkpointer (its checkpoints are written on the worker); at shard
 * end SHARD_END is written too, so the children never wait on a processor that did not checkpoint. Then the lease is
 * released.
 */
export async function finish(
  ctx: ShardContext,
  reason: 'TERMINATE' | 'REQUESTED',
  childShards: ChildShard[] = [],
): Promise<ShardConsumerResult> {
  ctx.setState(ConsumerState.SHUTTING_DOWN);
  const c = ctx.c;
  const request = () => ({
    ref: ctx.ref,
    processorName: ctx.input.processor,
    reason,
    lease: ctx.lease(),
    ...(reason === 'TERMINATE' ? { shardEnd: { childShardIds: childShards.map((child) => child.shardId) } } : {}),
    startingPosition: c.checkpoint ?? c.startingPosition,
    ...(c.checkpoint !== undefined ? { lastCheckpoint: c.checkpoint } : {}),
    ...(c.lastProcessed ? { lastProcessed: c.lastProcessed } : {}),
  });
  // Its worker is gone, or no worker had room for it: shut down a fresh instance on any worker (after renewing the
  // lease: a lost worker may have written checkpoints), so shutdown is still called. Allowed beyond a worker's cap.
  const anywhere = async (): Promise<ShutdownOutcome | 'ZOMBIE'> => {
    c.pin = undefined;
    c.renewLease = true;
    try {
      return await ctx.initializer.shutdownProcessor({ ...request(), pin: `${c.owner}/${c.pins}` });
    } catch (fallbackError) {
      if (classify(fallbackError, 'shutdown') === Failure.LEASE_LOST) return 'ZOMBIE';
      throw fallbackError;
    }
  };
  let outcome: ShutdownOutcome | 'ZOMBIE';
  if (!c.pin && ctx.unplaced) {
    outcome = await anywhere();
  } else {
    try {
      const p = await ctx.pin();
      outcome = await ctx.pinned(p).process.shutdownProcessor({ ...request(), pin: p.id });
    } catch (error) {
      const kind = classify(error, 'shutdown');
      if (kind === Failure.LEASE_LOST) return zombie(ctx);
      if (kind !== Failure.WORKER_LOST && kind !== Failure.DRAINING) throw error;
      outcome = await anywhere();
    }
  }
  if (outcome === 'ZOMBIE') return zombie(ctx);
  ctx.adoptLease(outcome, true);
  if (outcome.checkpoint) c.counters.checkpoints++;
  if (reason === 'TERMINATE') {
    c.checkpoint = SentinelCheckpoint.SHARD_END;
    c.counters.checkpoints++;
  }
  await ctx.control.releaseLease({ tableName: ctx.tableName, ref: ctx.ref, owner: c.owner, counter: c.counter });
  return result(ctx, reason, childShards);
}

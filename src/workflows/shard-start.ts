/**
 * The first phases of a shard's life (KCL's BlockOnParentShardTask and the start of its InitializeTask): wait until
 * every parent shard has ended, claim the lease, and decide where reading starts.
 */
import { ApplicationFailure, condition, log, workflowInfo } from '@temporalio/workflow';
import { ConsumerState } from '../consumer-types';
import { FailureType } from '../failure-types';
import { leaseOwner } from '../ids';
import { type Checkpoint, SentinelCheckpoint } from '../positions';
import { adoptIterator, emptyCounters, type ShardCursor, startPosition } from '../shard-cursor';
import type { ShardContext } from './shard-context';

export function invalidInput(message: string): ApplicationFailure {
  return ApplicationFailure.create({ type: FailureType.InvalidConfig, message, nonRetryable: true });
}

/**
 * Waits for the parent shards (both parents of a merge) to end: a child read before its parents are done could deliver
 * records of one partition key out of order. A parent with no lease has not ended: it is waited for, unless it has aged
 * out of the stream. Returns false if a stop came first.
 */
export async function waitOnParents(ctx: ShardContext): Promise<boolean> {
  const { ref, input } = ctx;
  let hashKeyRange = input.hashKeyRange;
  if (input.parentShardIds === undefined || hashKeyRange === undefined) {
    const description = await ctx.control.describeShard({ streamName: ref.streamName, shardId: ref.shardId });
    ctx.parentShardIds = input.parentShardIds ?? description.parentShardIds;
    hashKeyRange ??= description.hashKeyRange;
  }
  ctx.hashKeyRange = hashKeyRange;
  while (ctx.parentShardIds.length > 0) {
    const parents = await ctx.control.readParents({
      tableName: ctx.tableName,
      ref,
      parentShardIds: ctx.parentShardIds,
    });
    const waitingFor = parents.filter((parent) => parent.state !== 'ENDED' && parent.state !== 'AGED_OUT');
    if (waitingFor.length === 0) break;
    log.info('waiting for parent shards', {
      shardId: ref.shardId,
      waitingFor: waitingFor.map((p) => `${p.shardId}:${p.state}`),
    });
    if (await condition(() => ctx.stopRequested, ctx.options.parentShardPollIntervalMs)) return false;
  }
  return true;
}

/**
 * Claims the lease and builds the cursor: reading starts after the checkpoint, or at the initial position (child shards
 * at TRIM_HORIZON). Returns 'ALREADY_ENDED' for a shard whose lease already says SHARD_END (the lease is released).
 */
export async function claimShard(ctx: ShardContext): Promise<'CLAIMED' | 'ALREADY_ENDED'> {
  const { ref, options } = ctx;
  const info = workflowInfo();
  ctx.setState(ConsumerState.INITIALIZING);
  const owner = leaseOwner(info.workflowId, info.firstExecutionRunId);
  const lease = await ctx.control.claimLease({
    tableName: ctx.tableName,
    ref,
    owner,
    parentShardIds: ctx.parentShardIds,
    ...(ctx.hashKeyRange ? { hashKeyRange: ctx.hashKeyRange } : {}),
  });
  const cursor = (resumeFrom: ShardCursor['resumeFrom'], startingPosition: Checkpoint): ShardCursor => ({
    owner,
    counter: lease.counter,
    parentShardIds: ctx.parentShardIds,
    origin: resumeFrom,
    startingPosition,
    ...(lease.checkpoint !== undefined ? { checkpoint: lease.checkpoint } : {}),
    resumeFrom,
    pins: 0,
    counters: emptyCounters(),
    recentDeaggregationFailures: [],
    recentDeadLetters: [],
    run: 1,
    ...(ctx.hashKeyRange ? { hashKeyRange: ctx.hashKeyRange } : {}),
  });
  if (lease.checkpoint === SentinelCheckpoint.SHARD_END) {
    ctx.cursor = cursor({ type: 'TRIM_HORIZON' }, SentinelCheckpoint.SHARD_END);
    await ctx.control.releaseLease({ tableName: ctx.tableName, ref, owner, counter: lease.counter });
    return 'ALREADY_ENDED';
  }
  const start = startPosition(lease.checkpoint, ctx.parentShardIds.length > 0, options);
  if ('invalid' in start) throw invalidInput(`shard ${ref.shardId}: ${start.invalid}`);
  ctx.cursor = cursor(start.resumeFrom, start.startingPosition);
  if (start.skipUntil) ctx.cursor.skipUntil = start.skipUntil;
  return 'CLAIMED';
}

/** A fresh iterator where reading resumes (LATEST is pinned to the time it was taken, so a later re-read skips nothing). */
export async function freshIterator(ctx: ShardContext): Promise<void> {
  const c = ctx.c;
  adoptIterator(
    c,
    await ctx.control.getShardIterator({
      ref: ctx.ref,
      position: c.resumeFrom,
      ...(ctx.fanOut ? { fanOut: ctx.fanOut } : {}),
    }),
  );
}

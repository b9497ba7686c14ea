/**
 * ShardConsumerWorkflow: one durable owner per shard. Its phases, each in a module of its own, are KCL's:
 * - wait on parents, claim the lease, decide where to start (shard-start.ts);
 * - pin the shard to a worker and initialize the processor there (shard-context.ts);
 * - the batch loop of its execution: `per-batch` (shard-per-batch.ts, each batch delivered by shard-delivery.ts) or
 *   `windowed` (shard-windowed.ts);
 * - shut down: TERMINATE at shard end, REQUESTED on a stop, ZOMBIE when the lease is lost (shard-shutdown.ts).
 * Continue-as-new carries the cursor (src/shard-cursor.ts); the UI and the progress query are shard-details.ts.
 *
 * A port of vmware-go-kcl's shard consumer (worker/shard-consumer.go) that keeps its loop semantics and fixes what it
 * and Java KCL get wrong.
 */
import {
  allHandlersFinished,
  condition,
  defineQuery,
  defineSignal,
  makeContinueAsNewFunc,
  setHandler,
} from '@temporalio/workflow';
import type { MoveShard, ShardConsumerResult, ShardProgress } from '../consumer-types';
import { ConsumerState } from '../consumer-types';
import { defaultTableName, leaseTableNameProblem } from '../ids';
import { DEFAULT_SHARD_WORKFLOW_TASK_TIMEOUT_MS, validateShardConsumerOptions } from '../options';
import { ShardContext, type ShardConsumerInput, StoppedWhileWaiting } from './shard-context';
import { progressOf } from './shard-details';
import { classify, Failure } from './shard-failures';
import { runPerBatch } from './shard-per-batch';
import { finish, result, zombie } from './shard-shutdown';
import { claimShard, invalidInput, waitOnParents } from './shard-start';
import { runWindowed } from './shard-windowed';

export type { ShardCursor } from '../shard-cursor';
export type { ShardConsumerInput } from './shard-context';

/** What a stop may ask for beyond stopping (the stream consumer acts on it; a shard consumer ignores it). */
export interface StopRequest {
  /**
   * `retrieval: 'fan-out'`: once every shard consumer has stopped, deregister the enhanced fan-out consumer
   * (`temporal-kcl stop --deregister`).
   */
  deregisterConsumer?: boolean;
}

/** Stop consuming: the processor gets `shutdown(REQUESTED)` with a working checkpointer, then the workflow completes. */
export const stopSignal = defineSignal<[StopRequest?]>('stop');
/** The consumer's position, counters and state. */
export const progressQuery = defineQuery<ShardProgress>('progress');
/** A HALTED consumer (processing kept failing with `onProcessingFailure: 'HALT'`) tries the batch again. */
export const retrySignal = defineSignal('retry');
/**
 * Move the shard to another worker (sent by the stream consumer's placement): at its next batch boundary the processor
 * gets `shutdown(REQUESTED)` with a working checkpointer, and the target worker initializes a new one at that checkpoint.
 */
export const moveShardSignal = defineSignal<[MoveShard]>('moveShard');

export async function shardConsumerWorkflow(input: ShardConsumerInput): Promise<ShardConsumerResult> {
  for (const field of ['applicationName', 'streamName', 'shardId', 'processor'] as const) {
    if (typeof input?.[field] !== 'string' || input[field].length === 0) {
      throw invalidInput(`shard consumer input needs a non-empty ${field}`);
    }
  }
  const validation = validateShardConsumerOptions(input.options);
  if (!validation.ok) throw invalidInput(`invalid shard consumer options: ${validation.issues.join('; ')}`);
  const tableName = input.tableName ?? defaultTableName(input.applicationName);
  const tableProblem = leaseTableNameProblem(tableName);
  if (tableProblem) throw invalidInput(tableProblem);

  const ctx = new ShardContext(input, validation.options, tableName);
  setHandler(stopSignal, () => {
    ctx.stopRequested = true;
  });
  setHandler(retrySignal, () => {
    ctx.retryRequested = true;
  });
  setHandler(moveShardSignal, (move) => ctx.requestMove(move));
  setHandler(progressQuery, () => progressOf(ctx));
  ctx.showDetails();

  if (!ctx.cursor) {
    if (!(await waitOnParents(ctx))) return result(ctx, 'REQUESTED');
    if ((await claimShard(ctx)) === 'ALREADY_ENDED') return result(ctx, 'ALREADY_ENDED');
  }
  ctx.setState(ConsumerState.PROCESSING);
  await ctx.ensureFanOut();

  let outcome: ShardConsumerResult | 'CONTINUE_AS_NEW';
  try {
    outcome = ctx.options.execution === 'windowed' ? await runWindowed(ctx) : await runPerBatch(ctx);
  } catch (error) {
    // A stop while no worker had room: shut down without a pin.
    if (error instanceof StoppedWhileWaiting) return finish(ctx, 'REQUESTED');
    // The lease was lost wherever the loop noticed it (a renewal, a checkpoint on the worker): end as a zombie.
    if (classify(error, 'control') === Failure.LEASE_LOST) return zombie(ctx);
    throw error;
  }
  if (outcome !== 'CONTINUE_AS_NEW') return outcome;
  await condition(allHandlersFinished);
  if (ctx.stopRequested) return finish(ctx, 'REQUESTED');
  const c = ctx.c;
  return makeContinueAsNewFunc<typeof shardConsumerWorkflow>({
    workflowTaskTimeout: input.workflowTaskTimeoutMs ?? DEFAULT_SHARD_WORKFLOW_TASK_TIMEOUT_MS,
  })({
    ...input,
    parentShardIds: ctx.parentShardIds,
    ...(ctx.fanOut ? { fanOut: ctx.fanOut } : {}),
    cursor: { ...c, run: c.run + 1, ...(ctx.move ? { move: ctx.move } : {}) },
  });
}

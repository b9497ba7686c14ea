/**
 * How a shard consumer shows itself: the Temporal UI's current details (markdown, no history cost) and the `progress`
 * query's answer.
 */
import { setCurrentDetails } from '@temporalio/workflow';
import type { ShardProgress } from '../consumer-types';
import { formatPosition } from '../positions';
import { emptyCounters } from '../shard-cursor';
import type { ShardContext } from './shard-context';

export function renderDetails(ctx: ShardContext): void {
  const { ref, cursor } = ctx;
  const counters = cursor?.counters;
  setCurrentDetails(
    [
      `**${ctx.state}** — shard \`${ref.shardId}\` of stream \`${ref.streamName}\` (application \`${ref.applicationName}\`)`,
      '',
      `- checkpoint: \`${formatPosition(cursor?.checkpoint)}\`; last processed: \`${formatPosition(cursor?.lastProcessed)}\``,
      `- ${counters?.recordsProcessed ?? 0} records, ${counters?.batches ?? 0} batches, ${cursor?.millisBehindLatest ?? '-'} ms behind latest`,
      ...(counters && (counters.deaggregationFailures > 0 || counters.deadLetteredRecords > 0)
        ? [
            `- ${counters.deaggregationFailures} corrupt aggregates skipped, ${counters.deadLetteredRecords} records dead-lettered`,
          ]
        : []),
      `- execution: \`${ctx.options.execution}\`${ctx.options.execution === 'windowed' ? ' (a running window reports its position in its heartbeats: see Pending Activities)' : ''}`,
      ...(ctx.parentShardIds.length > 0
        ? [`- parents: ${ctx.parentShardIds.map((id) => `\`${id}\``).join(', ')}`]
        : []),
      ...(cursor?.pin ? [`- worker: \`${cursor.pin.workerQueue}\``] : []),
      ...(ctx.move ? [`- moving to \`${ctx.move.to ?? 'another worker'}\` (${ctx.move.reason})`] : []),
      ...(ctx.state === 'WAITING_FOR_WORKER'
        ? ['- waiting for a worker with room: every worker that answered holds its maxShardsPerWorker (--max-shards)']
        : []),
      ...(counters?.workerMoves || counters?.handoffs
        ? [`- ${counters.handoffs ?? 0} planned moves (graceful), ${counters.workerMoves} failovers`]
        : []),
      ...(ctx.haltedReason ? [`- halted: ${ctx.haltedReason} (signal \`retry\` to try again)`] : []),
    ].join('\n'),
  );
}

export function progressOf(ctx: ShardContext): ShardProgress {
  const { cursor } = ctx;
  return {
    ...ctx.ref,
    state: ctx.state,
    parentShardIds: ctx.parentShardIds,
    ...(cursor?.checkpoint !== undefined ? { checkpoint: cursor.checkpoint } : {}),
    ...(cursor?.lastProcessed ? { lastProcessed: cursor.lastProcessed } : {}),
    ...(cursor?.millisBehindLatest !== undefined ? { millisBehindLatest: cursor.millisBehindLatest } : {}),
    counters: cursor?.counters ?? emptyCounters(),
    recentDeaggregationFailures: cursor?.recentDeaggregationFailures ?? [],
    recentDeadLetters: cursor?.recentDeadLetters ?? [],
    ...(cursor?.pin ? { worker: cursor.pin.workerQueue } : {}),
    ...(ctx.haltedReason ? { haltedReason: ctx.haltedReason } : {}),
    run: cursor?.run ?? 1,
    execution: ctx.options.execution,
  };
}

/**
 * StreamConsumerWorkflow: consumes a whole stream. It lists the shards, starts one ShardConsumerWorkflow per shard that
 * is not at SHARD_END, follows resharding (children reported by shard consumers at shard end, and a periodic listing),
 * never starts a shard twice, and on stop tells every shard consumer to stop and completes when all have.
 */
import {
  allHandlersFinished,
  ApplicationFailure,
  condition,
  continueAsNew,
  defineQuery,
  getExternalWorkflowHandle,
  log,
  ParentClosePolicy,
  setCurrentDetails,
  setHandler,
  sleep,
  startChild,
  upsertSearchAttributes,
  WorkflowIdReusePolicy,
  workflowInfo,
} from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { ChildShard, ShardDescription } from '../consumer-types';
import { FailureType } from '../failure-types';
import { defaultTableName, shardConsumerWorkflowId } from '../ids';
import {
  DEFAULT_SHARD_SYNC_INTERVAL_MS,
  DEFAULT_SHARD_WORKFLOW_TASK_TIMEOUT_MS,
  type ShardConsumerOptions,
  streamConsumerSettingsProblems,
  validateShardConsumerOptions,
} from '../options';
import { KCL_APPLICATION, KCL_SHARD, KCL_STATE, KCL_STREAM } from '../search-attributes';
import { streamActivities } from './stream-activities';
import { type ShardConsumerInput, shardConsumerWorkflow, stopSignal } from './shard-consumer';
import { type ShardEnded, shardEndedSignal } from './stream-consumer-signals';

/** How the stream consumer tracks one shard. */
export type TrackedShard = { state: 'RUNNING' } | { state: 'ENDED'; reason: ShardEnded['reason'] | 'CLOSED' };

export interface StreamCursor {
  shards: Record<string, TrackedShard>;
  /** Highest shard id listed so far: later listings ask only for newer shards. */
  lastShardId?: string;
  stopping: boolean;
  /** Shard consumers started over the whole chain of runs. */
  started: number;
  /** Shard consumers that ended in earlier runs (no longer tracked), by reason. */
  endedEarlier?: Record<string, number>;
  run: number;
}

export interface StreamConsumerInput {
  applicationName: string;
  streamName: string;
  /** Name of the record processor factory registered on the workers. */
  processor: string;
  /** Lease table. @default the application name (as in KCL) */
  tableName?: string;
  /** Options of every shard consumer. */
  shardOptions?: ShardConsumerOptions;
  /**
   * How often the stream's shards are listed to find new ones (children are also started as soon as their parent's
   * consumer reports them, so this is a safety net). Each listing is a timer and an activity: two Temporal actions.
   * @default 60000 (as KCL's shardSyncIntervalMillis)
   */
  shardSyncIntervalMs?: number;
  /**
   * Workflow task timeout of the shard consumers: when a worker dies in the middle of a workflow task, the task moves
   * to another worker after this long. Shorter fails over faster; too short times out tasks on an overloaded worker.
   * @default 5000
   */
  shardWorkflowTaskTimeoutMs?: number;
  /**
   * History events after which a run continues as new, if Temporal has not suggested it before (tests set it low).
   * @default 20000
   */
  maxHistoryEventsPerRun?: number;
  /** Set by continue-as-new, never by callers. */
  cursor?: StreamCursor;
}

export interface StreamProgress {
  applicationName: string;
  streamName: string;
  state: 'RUNNING' | 'STOPPING' | 'ENDED';
  shards: { shardId: string; workflowId: string; state: TrackedShard['state']; reason?: string }[];
  started: number;
  run: number;
}

export interface StreamConsumerResult {
  applicationName: string;
  streamName: string;
  started: number;
  /** Shard consumers ended over the whole chain of runs, by reason. */
  ended: Record<string, number>;
}

export const streamProgressQuery = defineQuery<StreamProgress>('streamProgress');
export { stopSignal };

/** Shard consumers started per workflow task, so no single task carries thousands of commands. */
const START_CHUNK = 200;
/** While stopping, how often shard consumers that never reported are checked on. */
const STOP_CHECK_INTERVAL_MS = 30_000;

/** Ended shards by reason: those tracked, plus those that ended in earlier runs. */
function countEnded(
  shards: Record<string, TrackedShard>,
  earlier: Record<string, number> = {},
): Record<string, number> {
  const ended = { ...earlier };
  for (const tracked of Object.values(shards)) {
    if (tracked.state === 'ENDED') ended[tracked.reason] = (ended[tracked.reason] ?? 0) + 1;
  }
  return ended;
}

function invalid(message: string): ApplicationFailure {
  return ApplicationFailure.create({ type: FailureType.InvalidConfig, message, nonRetryable: true });
}

export async function streamConsumerWorkflow(input: StreamConsumerInput): Promise<StreamConsumerResult> {
  for (const field of ['applicationName', 'streamName', 'processor'] as const) {
    if (typeof input?.[field] !== 'string' || input[field].length === 0) {
      throw invalid(`stream consumer input needs a non-empty ${field}`);
    }
  }
  const validation = validateShardConsumerOptions(input.shardOptions);
  if (!validation.ok) throw invalid(`invalid shardOptions: ${validation.issues.join('; ')}`);
  const { applicationName, streamName } = input;
  const tableName = input.tableName ?? defaultTableName(applicationName);
  const problems = streamConsumerSettingsProblems({ ...input, tableName });
  if (problems.length > 0) throw invalid(problems.join('; '));
  const syncIntervalMs = input.shardSyncIntervalMs ?? DEFAULT_SHARD_SYNC_INTERVAL_MS;
  const workflowTaskTimeoutMs = input.shardWorkflowTaskTimeoutMs ?? DEFAULT_SHARD_WORKFLOW_TASK_TIMEOUT_MS;
  const maxEventsPerRun = input.maxHistoryEventsPerRun ?? 20_000;
  const info = workflowInfo();
  const searchable = info.typedSearchAttributes.get(KCL_APPLICATION) !== undefined;
  // The shard consumers' heartbeat timeout: how soon a dead worker is noticed.
  const activities = streamActivities(validation.options.heartbeatTimeoutMs);
  const cursor: StreamCursor = input.cursor ?? { shards: {}, stopping: false, started: 0, run: 1 };
  const queued = new Map<string, ChildShard>();
  let startedThisRun = 0;

  const running = () => Object.keys(cursor.shards).filter((id) => cursor.shards[id]?.state === 'RUNNING');

  /** What the Temporal UI shows as current details (no history cost), refreshed as shards start and end. */
  const showDetails = () => {
    const active = running();
    const ended = Object.keys(cursor.shards).length - active.length;
    setCurrentDetails(
      [
        `**${cursor.stopping ? 'STOPPING' : 'RUNNING'}** — stream \`${streamName}\` (application \`${applicationName}\`)`,
        '',
        `- ${active.length} shard consumers running, ${ended} ended; ${cursor.started} started in all`,
        `- running: ${active.map((id) => `\`${id}\``).join(', ') || 'none'}`,
        `- shards listed every ${syncIntervalMs} ms; lease table \`${tableName}\``,
      ].join('\n'),
    );
  };

  setHandler(stopSignal, () => {
    cursor.stopping = true;
    if (searchable) upsertSearchAttributes([{ key: KCL_STATE, value: 'STOPPING' }]);
    showDetails();
  });
  setHandler(shardEndedSignal, (ended) => {
    cursor.shards[ended.shardId] = { state: 'ENDED', reason: ended.reason };
    if (ended.reason === 'TERMINATE' || ended.reason === 'ALREADY_ENDED') {
      for (const child of ended.childShards) {
        if (!cursor.shards[child.shardId]) queued.set(child.shardId, child);
      }
    }
    showDetails();
  });
  setHandler(streamProgressQuery, (): StreamProgress => ({
    applicationName,
    streamName,
    state: cursor.stopping ? (running().length > 0 ? 'STOPPING' : 'ENDED') : 'RUNNING',
    shards: Object.entries(cursor.shards)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([shardId, tracked]) => ({
        shardId,
        workflowId: shardConsumerWorkflowId(applicationName, streamName, shardId),
        state: tracked.state,
        ...(tracked.state === 'ENDED' ? { reason: tracked.reason } : {}),
      })),
    started: cursor.started,
    run: cursor.run,
  }));

  /** Starts a consumer per shard not yet tracked; one already running (e.g. started by hand) is adopted. */
  async function startConsumers(shards: (ShardDescription | ChildShard)[]): Promise<void> {
    const fresh = shards.filter((shard) => !cursor.shards[shard.shardId]);
    for (let i = 0; i < fresh.length; i += START_CHUNK) {
      await Promise.all(fresh.slice(i, i + START_CHUNK).map(startConsumer));
    }
    showDetails();
  }

  async function startConsumer(shard: ShardDescription | ChildShard): Promise<void> {
    const workflowId = shardConsumerWorkflowId(applicationName, streamName, shard.shardId);
    cursor.shards[shard.shardId] = { state: 'RUNNING' };
    const args: ShardConsumerInput = {
      applicationName,
      streamName,
      shardId: shard.shardId,
      processor: input.processor,
      tableName,
      parentShardIds: shard.parentShardIds,
      ...(shard.hashKeyRange ? { hashKeyRange: shard.hashKeyRange } : {}),
      ...(input.shardOptions ? { options: input.shardOptions } : {}),
      streamWorkflowId: info.workflowId,
    };
    try {
      await startChild(shardConsumerWorkflow, {
        workflowId,
        args: [args],
        taskQueue: info.taskQueue,
        // Shard consumers outlive this workflow's runs (continue-as-new) and are stopped by signal, not by closing.
        parentClosePolicy: ParentClosePolicy.ABANDON,
        workflowTaskTimeout: workflowTaskTimeoutMs,
        workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
        staticSummary: `Kinesis shard ${shard.shardId} of stream ${streamName} (application ${applicationName})`,
        staticDetails: [
          `**Shard consumer** of temporal-kcl`,
          // A blank line before the list, or the UI's markdown runs the items into one line.
          '',
          `- application: \`${applicationName}\``,
          `- stream: \`${streamName}\``,
          `- shard: \`${shard.shardId}\``,
          `- parents: ${shard.parentShardIds.length > 0 ? shard.parentShardIds.map((id) => `\`${id}\``).join(', ') : 'none'}`,
          `- lease table: \`${tableName}\``,
          `- processor: \`${input.processor}\``,
        ].join('\n'),
        ...(searchable
          ? {
              typedSearchAttributes: [
                { key: KCL_APPLICATION, value: applicationName },
                { key: KCL_STREAM, value: streamName },
                { key: KCL_SHARD, value: shard.shardId },
                { key: KCL_STATE, value: 'STARTING' },
              ],
            }
          : {}),
      });
      cursor.started++;
      startedThisRun++;
    } catch (error) {
      if (!(error instanceof WorkflowExecutionAlreadyStartedError)) throw error;
      log.info('shard consumer already running; adopting it', { workflowId });
    }
  }

  /** Tells every running shard consumer to stop, then waits until all have ended. */
  async function stopAll(): Promise<StreamConsumerResult> {
    const told = new Set<string>();
    for (;;) {
      const active = running();
      const toTell = active.filter((id) => !told.has(id));
      await Promise.all(
        toTell.map(async (shardId) => {
          told.add(shardId);
          try {
            await getExternalWorkflowHandle(shardConsumerWorkflowId(applicationName, streamName, shardId)).signal(
              stopSignal,
            );
          } catch {
            cursor.shards[shardId] = { state: 'ENDED', reason: 'CLOSED' };
          }
        }),
      );
      if (running().length === 0) break;
      if (await condition(() => running().length === 0, STOP_CHECK_INTERVAL_MS)) break;
      // A consumer that closed without reporting (terminated by hand) would otherwise be waited for forever.
      const ids = running().map((id) => shardConsumerWorkflowId(applicationName, streamName, id));
      const closed = new Set(await activities.closedWorkflows({ workflowIds: ids }));
      for (const shardId of running()) {
        if (closed.has(shardConsumerWorkflowId(applicationName, streamName, shardId))) {
          cursor.shards[shardId] = { state: 'ENDED', reason: 'CLOSED' };
        }
      }
    }
    // A shard consumer reports its end just before it completes, so the report can arrive while it is still running.
    // Complete only once every one has closed: a caller that stops the workers right after the stop (as `temporal-kcl
    // stop` users do) must not leave a shard consumer running with no worker to finish it.
    let open = Object.entries(cursor.shards)
      .filter(([, tracked]) => tracked.state !== 'ENDED' || tracked.reason !== 'CLOSED')
      .map(([shardId]) => shardConsumerWorkflowId(applicationName, streamName, shardId));
    for (let delayMs = 100; open.length > 0; delayMs = Math.min(delayMs * 2, STOP_CHECK_INTERVAL_MS)) {
      const closed = new Set(await activities.closedWorkflows({ workflowIds: open }));
      open = open.filter((workflowId) => !closed.has(workflowId));
      if (open.length > 0) await sleep(delayMs);
    }
    await condition(allHandlersFinished);
    if (searchable) upsertSearchAttributes([{ key: KCL_STATE, value: 'ENDED' }]);
    const ended = countEnded(cursor.shards, cursor.endedEarlier);
    return { applicationName, streamName, started: cursor.started, ended };
  }

  showDetails();
  if (input.cursor === undefined) {
    const discovered = await activities.discoverShards({ streamName, tableName });
    if (discovered.lastShardId) cursor.lastShardId = discovered.lastShardId;
    log.info('starting shard consumers', { streamName, shards: discovered.shards.length, listed: discovered.listed });
    await startConsumers(discovered.shards);
  }

  for (;;) {
    if (cursor.stopping) return stopAll();
    if (queued.size > 0) {
      const children = [...queued.values()];
      queued.clear();
      await startConsumers(children);
      continue;
    }
    if (
      workflowInfo().continueAsNewSuggested ||
      workflowInfo().historyLength > maxEventsPerRun ||
      startedThisRun > 5_000
    ) {
      await condition(allHandlersFinished);
      if (!cursor.stopping && queued.size === 0) {
        // Ended shards need no tracking: incremental listings never return them again. Only their count is kept.
        const shards = Object.fromEntries(
          Object.entries(cursor.shards).filter(([, tracked]) => tracked.state === 'RUNNING'),
        );
        const endedEarlier = countEnded(cursor.shards, cursor.endedEarlier);
        return continueAsNew<typeof streamConsumerWorkflow>({
          ...input,
          cursor: { ...cursor, shards, endedEarlier, run: cursor.run + 1 },
        });
      }
      continue;
    }
    const woken = await condition(() => cursor.stopping || queued.size > 0, syncIntervalMs);
    if (woken) continue;
    const discovered = await activities.discoverShards({
      streamName,
      tableName,
      ...(cursor.lastShardId ? { afterShardId: cursor.lastShardId } : {}),
    });
    if (discovered.lastShardId) cursor.lastShardId = discovered.lastShardId;
    if (discovered.shards.length > 0) {
      log.info('new shards found', { shards: discovered.shards.map((shard) => shard.shardId) });
      await startConsumers(discovered.shards);
    }
  }
}

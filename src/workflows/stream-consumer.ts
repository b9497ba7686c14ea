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
  patched,
  setCurrentDetails,
  setHandler,
  sleep,
  startChild,
  upsertSearchAttributes,
  WorkflowIdReusePolicy,
  workflowInfo,
} from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { ChildShard, FanOutConsumer, ShardDescription } from '../consumer-types';
import { FailureType } from '../failure-types';
import { defaultTableName, shardConsumerWorkflowId } from '../ids';
import {
  DEFAULT_SHARD_SYNC_INTERVAL_MS,
  DEFAULT_SHARD_WORKFLOW_TASK_TIMEOUT_MS,
  type ShardConsumerOptions,
  streamConsumerSettingsProblems,
  validateShardConsumerOptions,
} from '../options';
import type { PlacementState, WorkerSummary } from '../placement';
import { KCL_APPLICATION, KCL_SHARD, KCL_STATE, KCL_STREAM } from '../search-attributes';
import { streamActivities } from './stream-activities';
import { type ShardConsumerInput, shardConsumerWorkflow, stopSignal } from './shard-consumer';
import {
  closeOf,
  type EndReason,
  endsShard,
  HEALTHY_RUN_MS,
  isWorkflowNotFound,
  restartDelayMs,
} from './shard-restarts';
import { shardEndedSignal, workerLeavingSignal, workerLostSignal } from './stream-consumer-signals';
import { Placement } from './stream-placement';

/**
 * How the stream consumer tracks one shard. A consumer that ended before its shard did waits (RESTARTING) until
 * `restartAt` (workflow time, epoch ms) and is started again; `restarts` counts its restarts, `streak` those in a row
 * (for the backoff), `lastEnd` says why it last ended.
 */
export type TrackedShard =
  | { state: 'RUNNING'; startedAt?: number; restarts?: number; streak?: number; lastEnd?: string }
  | {
      state: 'RESTARTING';
      restartAt: number;
      restarts: number;
      streak: number;
      /** How the consumer last ended, and the text shown for it (with the failure's message). */
      reason: EndReason;
      lastEnd: string;
      busy?: number;
    }
  | { state: 'ENDED'; reason: EndReason };

export interface StreamCursor {
  shards: Record<string, TrackedShard>;
  /** Highest shard id listed so far: later listings ask only for newer shards. */
  lastShardId?: string;
  stopping: boolean;
  /** Shard consumers started over the whole chain of runs. */
  started: number;
  /** Shard consumers that ended in earlier runs (no longer tracked), by reason. */
  endedEarlier?: Record<string, number>;
  /** Shard consumers started again (after a ZOMBIE end, a failure, ...) over the whole chain of runs. */
  restarts?: number;
  /** The stream identifier, when the lease table is a multi-stream one (decided by the first run). */
  streamIdentifier?: string;
  /** The coordinator's placement memory (moves in flight, cooldowns, suspect workers, caps). */
  placement?: PlacementState;
  /** `retrieval: 'fan-out'`: the registered stream consumer every shard subscribes through. */
  fanOut?: FanOutConsumer;
  /** A stop asked for the fan-out consumer to be deregistered once the shards have stopped. */
  deregisterConsumer?: boolean;
  run: number;
}

export interface StreamConsumerInput {
  applicationName: string;
  streamName: string;
  /** Name of the record processor factory registered on the workers. */
  processor: string;
  /** Lease table. @default the application name (as in KCL) */
  tableName?: string;
  /**
   * Keep this stream's leases in Java KCL's multi-stream layout (lease key `<account>:<stream>:<creation epoch>:<shard
   * id>`, with `streamName` and `shardId` attributes), so that several streams share the table. Every stream on the
   * table must use it; a table holding single-stream leases is refused (and a multi-stream table without it).
   * @default false: lease key = shard id, one stream per table (Java KCL's default layout)
   */
  multiStream?: boolean;
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
   * @default 2000
   */
  shardWorkflowTaskTimeoutMs?: number;
  /**
   * History events after which a run continues as new, if Temporal has not suggested it before (tests set it low).
   * @default 20000
   */
  maxHistoryEventsPerRun?: number;
  /**
   * How often shard consumers started by an earlier run (which this run cannot watch) are checked on, so that one that
   * closed without telling (failed, terminated by hand) is started again. Those started by this run are watched.
   * @default 60000
   */
  shardAuditIntervalMs?: number;
  /**
   * Balance the shards over the workers: watch the fleet (the shared queue's pollers and the lease table) and move
   * shards by `moveShard` signal when workers join or leave, when a worker is over ceil(S/N) + 1 shards or its cap, or
   * when one carries far more KB/s than the others (README "Scaling workers"). Off: shards stay where they land.
   * @default true
   */
  placement?: boolean;
  /** Set by continue-as-new, never by callers. */
  cursor?: StreamCursor;
}

export interface StreamProgress {
  applicationName: string;
  streamName: string;
  state: 'RUNNING' | 'STOPPING' | 'ENDED';
  shards: {
    shardId: string;
    workflowId: string;
    state: TrackedShard['state'];
    /** Why an ENDED shard ended. */
    reason?: string;
    /** Times its consumer was started again. */
    restarts?: number;
    /** Why its consumer last ended before its shard did (e.g. `ZOMBIE`, `FAILED: <message>`). */
    lastEnd?: string;
    /** When a RESTARTING shard's consumer is started again (ISO-8601). */
    restartAt?: string;
  }[];
  started: number;
  /** Shard consumers started again, over the whole chain of runs. */
  restarts: number;
  run: number;
  /** `retrieval: 'fan-out'`: the enhanced fan-out consumer the shards subscribe through. */
  fanOut?: FanOutConsumer;
  /** The workers serving the stream, as the coordinator's last fleet view shows them (absent before it, or off). */
  workers?: WorkerSummary[];
  /** Active shards beyond what the workers' `--max-shards` caps hold. */
  waitingForCapacity?: number;
}

export interface StreamConsumerResult {
  applicationName: string;
  streamName: string;
  started: number;
  /** Shard consumers ended over the whole chain of runs, by reason. */
  ended: Record<string, number>;
  /** Shard consumers started again, over the whole chain of runs. */
  restarts: number;
  /** `stop --deregister`: the enhanced fan-out consumer deregistered (its ARN). */
  deregisteredConsumer?: string;
}

export const streamProgressQuery = defineQuery<StreamProgress>('streamProgress');
export { stopSignal };

/** Shard consumers started per workflow task, so no single task carries thousands of commands. */
const START_CHUNK = 200;
/** While stopping, how often shard consumers that never reported are checked on. */
const STOP_CHECK_INTERVAL_MS = 30_000;
/** First pause before a failed stop signal is sent again (doubling up to STOP_CHECK_INTERVAL_MS). */
const STOP_RETRY_INITIAL_MS = 1_000;
/** A restart that finds the old consumer still running (it reports its end just before it completes) tries again this
 * many times before it adopts the running one (started by someone else). */
const MAX_BUSY_RESTARTS = 3;

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
  const auditIntervalMs = input.shardAuditIntervalMs ?? 60_000;
  const workflowTaskTimeoutMs = input.shardWorkflowTaskTimeoutMs ?? DEFAULT_SHARD_WORKFLOW_TASK_TIMEOUT_MS;
  const maxEventsPerRun = input.maxHistoryEventsPerRun ?? 20_000;
  const info = workflowInfo();
  const searchable = info.typedSearchAttributes.get(KCL_APPLICATION) !== undefined;
  // The shard consumers' heartbeat timeout: how soon a dead worker is noticed.
  const activities = streamActivities(validation.options.heartbeatTimeoutMs);
  const cursor: StreamCursor = input.cursor ?? { shards: {}, stopping: false, started: 0, run: 1 };
  const queued = new Map<string, ChildShard>();
  /** Shard consumers this run started, and which start of each (its restart count): their results are watched. */
  const watched = new Map<string, number>();
  let startedThisRun = 0;

  const workflowIdOf = (shardId: string) => shardConsumerWorkflowId(applicationName, streamName, shardId);
  const running = () => Object.keys(cursor.shards).filter((id) => cursor.shards[id]?.state === 'RUNNING');
  const placement = new Placement(
    {
      taskQueue: info.taskQueue,
      tableName,
      streamIdentifier: () => cursor.streamIdentifier,
      workflowIdOf,
      activeShards: () => {
        const startedAt: Record<string, number> = {};
        for (const [shardId, tracked] of Object.entries(cursor.shards)) {
          if (tracked.state === 'RUNNING' && tracked.startedAt !== undefined) startedAt[shardId] = tracked.startedAt;
        }
        return { shardIds: running(), startedAt };
      },
      stopping: () => cursor.stopping,
      changed: () => showDetails(),
    },
    cursor.placement,
  );
  const restarting = () =>
    Object.entries(cursor.shards).flatMap(([shardId, tracked]) =>
      tracked.state === 'RESTARTING' ? [{ shardId, tracked }] : [],
    );

  /** What the Temporal UI shows as current details (no history cost), refreshed as shards start and end. */
  const showDetails = () => {
    const active = running();
    const waiting = restarting();
    const ended = Object.keys(cursor.shards).length - active.length - waiting.length;
    setCurrentDetails(
      [
        `**${cursor.stopping ? 'STOPPING' : 'RUNNING'}** — stream \`${streamName}\` (application \`${applicationName}\`)`,
        '',
        `- ${active.length} shard consumers running, ${ended} ended; ${cursor.started} started in all, ${cursor.restarts ?? 0} of them restarts`,
        `- running: ${active.map((id) => `\`${id}\``).join(', ') || 'none'}`,
        ...waiting.map(
          ({ shardId, tracked }) =>
            `- restarting \`${shardId}\` at ${new Date(tracked.restartAt).toISOString()} (restart ${tracked.restarts}; ended ${tracked.lastEnd})`,
        ),
        ...(cursor.fanOut
          ? [`- enhanced fan-out through consumer \`${cursor.fanOut.consumerName}\` (\`${cursor.fanOut.consumerArn}\`)`]
          : []),
        `- shards listed every ${syncIntervalMs} ms; lease table \`${tableName}\`${cursor.streamIdentifier ? ` (multi-stream, \`${cursor.streamIdentifier}\`)` : ''}`,
        ...placement.details(),
      ].join('\n'),
    );
  };

  /**
   * A shard consumer ended (it told us, its result arrived, or the audit found it closed). At shard end its children
   * may start; while stopping it is done; otherwise the shard still needs a consumer: it is started again after a
   * backoff, as KCL's lease auditor would give an unowned lease to a worker.
   */
  function onShardEnded(shardId: string, reason: EndReason, detail?: string, childShards: ChildShard[] = []): void {
    const tracked = cursor.shards[shardId];
    if (tracked?.state !== 'RUNNING') return; // already handled (the signal and the result both tell)
    if (endsShard(reason) || cursor.stopping) {
      cursor.shards[shardId] = { state: 'ENDED', reason };
      if (endsShard(reason)) {
        for (const child of childShards) {
          if (!cursor.shards[child.shardId]) queued.set(child.shardId, child);
        }
      }
      showDetails();
      return;
    }
    const now = Date.now();
    const healthy = tracked.startedAt !== undefined && now - tracked.startedAt >= HEALTHY_RUN_MS;
    const streak = healthy ? 1 : (tracked.streak ?? 0) + 1;
    const delayMs = restartDelayMs(streak);
    const lastEnd = detail ? `${reason}: ${detail.slice(0, 300)}` : reason;
    cursor.shards[shardId] = {
      state: 'RESTARTING',
      restartAt: now + delayMs,
      restarts: (tracked.restarts ?? 0) + 1,
      streak,
      reason,
      lastEnd,
    };
    log.warn('shard consumer ended before its shard did; starting it again', {
      shardId,
      reason: lastEnd,
      inMs: delayMs,
      restarts: (tracked.restarts ?? 0) + 1,
    });
    showDetails();
  }

  setHandler(stopSignal, (request) => {
    cursor.stopping = true;
    if (request?.deregisterConsumer) cursor.deregisterConsumer = true;
    if (searchable) upsertSearchAttributes([{ key: KCL_STATE, value: 'STOPPING' }]);
    showDetails();
  });
  setHandler(shardEndedSignal, (ended) => onShardEnded(ended.shardId, ended.reason, undefined, ended.childShards));
  setHandler(workerLeavingSignal, ({ workerQueue }) => placement.workerLeaving(workerQueue));
  setHandler(workerLostSignal, ({ workerQueue }) => placement.workerLost(workerQueue));
  setHandler(streamProgressQuery, (): StreamProgress => ({
    applicationName,
    streamName,
    state: cursor.stopping ? (running().length > 0 ? 'STOPPING' : 'ENDED') : 'RUNNING',
    shards: Object.entries(cursor.shards)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([shardId, tracked]) => ({
        shardId,
        workflowId: workflowIdOf(shardId),
        state: tracked.state,
        ...(tracked.state === 'ENDED' ? { reason: tracked.reason } : {}),
        ...(tracked.state !== 'ENDED' && tracked.restarts ? { restarts: tracked.restarts } : {}),
        ...(tracked.state !== 'ENDED' && tracked.lastEnd ? { lastEnd: tracked.lastEnd } : {}),
        ...(tracked.state === 'RESTARTING' ? { restartAt: new Date(tracked.restartAt).toISOString() } : {}),
      })),
    started: cursor.started,
    restarts: cursor.restarts ?? 0,
    run: cursor.run,
    ...(cursor.fanOut ? { fanOut: cursor.fanOut } : {}),
    ...placement.progressFields(),
  }));

  /** Starts a consumer per shard not yet tracked; one already running (e.g. started by hand) is adopted. */
  async function startConsumers(shards: (ShardDescription | ChildShard)[]): Promise<void> {
    const fresh = shards.filter((shard) => !cursor.shards[shard.shardId]);
    for (let i = 0; i < fresh.length; i += START_CHUNK) {
      await Promise.all(fresh.slice(i, i + START_CHUNK).map((shard) => startConsumer(shard)));
    }
    showDetails();
  }

  /** Starts again the consumers whose restart is due. */
  async function restartDue(): Promise<void> {
    const now = Date.now();
    const due = restarting().filter(({ tracked }) => tracked.restartAt <= now);
    for (let i = 0; i < due.length; i += START_CHUNK) {
      await Promise.all(
        due
          .slice(i, i + START_CHUNK)
          .map(({ shardId, tracked }) => startConsumer({ shardId, parentShardIds: [] }, tracked)),
      );
    }
    if (due.length > 0) showDetails();
  }

  /** When the next restart is due (workflow time), if any. */
  const nextRestartAt = () => Math.min(...restarting().map(({ tracked }) => tracked.restartAt));

  /**
   * Starts the consumer of a shard; `restart` when it is started again (its parents are done by then: the lease and
   * ListShards tell the consumer where it stands).
   */
  async function startConsumer(
    shard: ShardDescription | ChildShard,
    restart?: Extract<TrackedShard, { state: 'RESTARTING' }>,
  ): Promise<void> {
    const workflowId = workflowIdOf(shard.shardId);
    const restarts = restart?.restarts ?? 0;
    cursor.shards[shard.shardId] = {
      state: 'RUNNING',
      startedAt: Date.now(),
      ...(restart ? { restarts, streak: restart.streak, lastEnd: restart.lastEnd } : {}),
    };
    const args: ShardConsumerInput = {
      applicationName,
      streamName,
      shardId: shard.shardId,
      processor: input.processor,
      tableName,
      // A restarted consumer looks its parents and hash-key range up itself.
      ...(restart ? {} : { parentShardIds: shard.parentShardIds }),
      ...(!restart && shard.hashKeyRange ? { hashKeyRange: shard.hashKeyRange } : {}),
      ...(input.shardOptions ? { options: input.shardOptions } : {}),
      streamWorkflowId: info.workflowId,
      workflowTaskTimeoutMs,
      ...(cursor.streamIdentifier ? { streamIdentifier: cursor.streamIdentifier } : {}),
      ...(cursor.fanOut ? { fanOut: cursor.fanOut } : {}),
    };
    let handle;
    try {
      handle = await startChild(shardConsumerWorkflow, {
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
          `- parents: ${shard.parentShardIds.length > 0 ? shard.parentShardIds.map((id) => `\`${id}\``).join(', ') : restart ? 'looked up' : 'none'}`,
          `- lease table: \`${tableName}\``,
          `- processor: \`${input.processor}\``,
          ...(restart ? [`- restart ${restarts}; the previous consumer ended ${restart.lastEnd}`] : []),
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
    } catch (error) {
      if (!(error instanceof WorkflowExecutionAlreadyStartedError)) throw error;
      if (restart && (restart.busy ?? 0) < MAX_BUSY_RESTARTS) {
        // The consumer that ended has not closed yet (it reports just before it completes): try again shortly.
        cursor.shards[shard.shardId] = {
          ...restart,
          busy: (restart.busy ?? 0) + 1,
          restartAt: Date.now() + restartDelayMs(1),
        };
        return;
      }
      // Adopted: it runs, but not as our child. The audit checks on it.
      log.info('shard consumer already running; adopting it', { workflowId });
      return;
    }
    cursor.started++;
    startedThisRun++;
    if (restart) cursor.restarts = (cursor.restarts ?? 0) + 1;
    watched.set(shard.shardId, restarts);
    const sameStart = () => {
      const tracked = cursor.shards[shard.shardId];
      return (
        watched.get(shard.shardId) === restarts && tracked?.state === 'RUNNING' && (tracked.restarts ?? 0) === restarts
      );
    };
    // Its result tells how it ended even if its signal never came, and a failure (which sends no signal) at once.
    void handle.result().then(
      (result) => {
        if (sameStart()) onShardEnded(shard.shardId, result.reason, undefined, result.childShards);
      },
      (error: unknown) => {
        if (!sameStart()) return;
        const closed = closeOf(error);
        onShardEnded(shard.shardId, closed.reason, closed.message);
      },
    );
  }

  /**
   * Checks on the running consumers this run does not watch (started by an earlier run, or adopted): one that closed
   * without a word (failed, terminated by hand) is handled as ended.
   */
  async function audit(): Promise<void> {
    const unwatched = running().filter((shardId) => !watched.has(shardId));
    if (unwatched.length === 0) return;
    const byWorkflowId = new Map(unwatched.map((shardId) => [workflowIdOf(shardId), shardId]));
    const closed = await activities.closedShardConsumers({ workflowIds: [...byWorkflowId.keys()] });
    for (const consumer of closed) {
      const shardId = byWorkflowId.get(consumer.workflowId);
      if (shardId === undefined) continue;
      const reason = consumer.reason === 'NOT_FOUND' ? 'CLOSED' : consumer.reason;
      onShardEnded(shardId, reason, consumer.message, consumer.childShards);
    }
  }

  /** Tells every running shard consumer to stop, then waits until all have ended. */
  async function stopAll(): Promise<StreamConsumerResult> {
    await placement.stop();
    // A consumer waiting for its restart is not running: it ends with the reason it last ended with.
    for (const { shardId, tracked } of restarting()) {
      cursor.shards[shardId] = { state: 'ENDED', reason: tracked.reason };
    }
    const told = new Set<string>();
    let retryDelayMs = STOP_RETRY_INITIAL_MS;
    for (;;) {
      const active = running();
      const toTell = active.filter((id) => !told.has(id));
      let failed = 0;
      await Promise.all(
        toTell.map(async (shardId) => {
          told.add(shardId);
          try {
            await getExternalWorkflowHandle(workflowIdOf(shardId)).signal(stopSignal);
          } catch (error) {
            // Only "not running" means the consumer is gone; any other failure (e.g. its signal limit) is tried again.
            if (isWorkflowNotFound(error)) {
              cursor.shards[shardId] = { state: 'ENDED', reason: 'CLOSED' };
            } else {
              told.delete(shardId);
              failed++;
              log.warn('stop signal to a shard consumer failed; trying again', { shardId, error: String(error) });
            }
          }
        }),
      );
      if (running().length === 0) break;
      const waitMs = failed > 0 ? retryDelayMs : STOP_CHECK_INTERVAL_MS;
      if (failed > 0) retryDelayMs = Math.min(retryDelayMs * 2, STOP_CHECK_INTERVAL_MS);
      if (await condition(() => running().length === 0, waitMs)) break;
      // A consumer that closed without reporting (terminated by hand) would otherwise be waited for forever.
      const ids = running().map(workflowIdOf);
      const closed = new Set(await activities.closedWorkflows({ workflowIds: ids }));
      for (const shardId of running()) {
        if (closed.has(workflowIdOf(shardId))) {
          cursor.shards[shardId] = { state: 'ENDED', reason: 'CLOSED' };
        }
      }
    }
    // A shard consumer reports its end just before it completes, so the report can arrive while it is still running.
    // Complete only once every one has closed: a caller that stops the workers right after the stop (as `temporal-kcl
    // stop` users do) must not leave a shard consumer running with no worker to finish it.
    let open = Object.entries(cursor.shards)
      .filter(([, tracked]) => tracked.state !== 'ENDED' || tracked.reason !== 'CLOSED')
      .map(([shardId]) => workflowIdOf(shardId));
    // Checked often (every 2 s at most): a stop is rare, and the caller is waiting.
    for (let delayMs = 100; open.length > 0; delayMs = Math.min(delayMs * 2, 2_000)) {
      const closed = new Set(await activities.closedWorkflows({ workflowIds: open }));
      open = open.filter((workflowId) => !closed.has(workflowId));
      if (open.length > 0) await sleep(delayMs);
    }
    await condition(allHandlersFinished);
    // After every shard consumer closed: no subscription of theirs is cut short.
    let deregistered: string | undefined;
    if (cursor.deregisterConsumer && cursor.fanOut) {
      await activities.deregisterStreamConsumer({ consumerArn: cursor.fanOut.consumerArn });
      deregistered = cursor.fanOut.consumerArn;
      log.info('enhanced fan-out consumer deregistered', { consumerArn: deregistered });
    }
    if (searchable) upsertSearchAttributes([{ key: KCL_STATE, value: 'ENDED' }]);
    const ended = countEnded(cursor.shards, cursor.endedEarlier);
    return {
      applicationName,
      streamName,
      started: cursor.started,
      ended,
      restarts: cursor.restarts ?? 0,
      ...(deregistered ? { deregisteredConsumer: deregistered } : {}),
    };
  }

  showDetails();
  if (input.cursor === undefined) {
    // The lease table must suit this stream: no mixed layouts, one stream per single-stream table.
    const prepared = await activities.prepareLeaseTable({
      tableName,
      applicationName,
      streamName,
      multiStream: input.multiStream ?? false,
    });
    if (prepared.streamIdentifier) cursor.streamIdentifier = prepared.streamIdentifier;
    if (validation.options.retrieval === 'fan-out') {
      // Registered once for the application (if it does not exist yet) and passed to every shard consumer.
      cursor.fanOut = await activities.registerStreamConsumer({
        streamName,
        consumerName: validation.options.consumerName ?? applicationName,
      });
      log.info('enhanced fan-out consumer ACTIVE', { ...cursor.fanOut });
      showDetails();
    }
    const discovered = await activities.discoverShards({
      streamName,
      tableName,
      ...(cursor.streamIdentifier ? { streamIdentifier: cursor.streamIdentifier } : {}),
    });
    if (discovered.lastShardId) cursor.lastShardId = discovered.lastShardId;
    log.info('starting shard consumers', { streamName, shards: discovered.shards.length, listed: discovered.listed });
    await startConsumers(discovered.shards);
  }

  // Histories recorded before placement existed schedule no fleet watch here: `patched` keeps them replaying.
  if (input.placement !== false && !cursor.stopping && patched('placement')) placement.start();

  let nextSyncAt = Date.now() + syncIntervalMs;
  let nextAuditAt =
    Date.now() + (input.cursor === undefined ? auditIntervalMs : Math.min(auditIntervalMs, syncIntervalMs));
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
      await placement.stop();
      await condition(allHandlersFinished);
      if (!cursor.stopping && queued.size === 0) {
        // Ended shards need no tracking: incremental listings never return them again. Only their count is kept.
        const shards = Object.fromEntries(
          Object.entries(cursor.shards).filter(([, tracked]) => tracked.state !== 'ENDED'),
        );
        const endedEarlier = countEnded(cursor.shards, cursor.endedEarlier);
        return continueAsNew<typeof streamConsumerWorkflow>({
          ...input,
          cursor: { ...cursor, shards, endedEarlier, ...placement.carried(), run: cursor.run + 1 },
        });
      }
      if (!cursor.stopping) placement.resume();
      continue;
    }
    await restartDue();
    const waitMs = Math.min(nextSyncAt, nextAuditAt, nextRestartAt()) - Date.now();
    if (waitMs > 0 && (await condition(() => cursor.stopping || queued.size > 0, waitMs))) continue;
    if (Date.now() >= nextAuditAt) {
      await audit();
      nextAuditAt = Date.now() + auditIntervalMs;
    }
    if (Date.now() < nextSyncAt) continue;
    nextSyncAt = Date.now() + syncIntervalMs;
    const discovered = await activities.discoverShards({
      streamName,
      tableName,
      ...(cursor.lastShardId ? { afterShardId: cursor.lastShardId } : {}),
      ...(cursor.streamIdentifier ? { streamIdentifier: cursor.streamIdentifier } : {}),
    });
    if (discovered.lastShardId) cursor.lastShardId = discovered.lastShardId;
    if (discovered.shards.length > 0) {
      log.info('new shards found', { shards: discovered.shards.map((shard) => shard.shardId) });
      await startConsumers(discovered.shards);
    }
  }
}

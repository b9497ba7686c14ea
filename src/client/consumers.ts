/**
 * Starting, stopping and inspecting consumers with the Temporal client you already have. The CLI uses these, so ids,
 * search attributes and options are built the same way everywhere.
 */
import type { Client, WorkflowHandle } from '@temporalio/client';
import { WorkflowNotFoundError } from '@temporalio/common';
import { decodeArrayFromPayloads } from '@temporalio/common/lib/internal-non-workflow';
import type { WindowHeartbeat } from '../activities';
import type { ShardConsumerResult, ShardProgress } from '../consumer-types';
import { InvalidConfigError, KclError } from '../errors';
import { DEFAULT_TASK_QUEUE, defaultTableName, shardConsumerWorkflowId, streamConsumerWorkflowId } from '../ids';
import { type ShardConsumerOptions, streamConsumerSettingsProblems, validateShardConsumerOptions } from '../options';
import type { Lease } from '../checkpoint/lease-item';
import { KCL_APPLICATION, KCL_STATE, KCL_STREAM } from '../search-attributes';
import { progressQuery, type shardConsumerWorkflow } from '../workflows/shard-consumer';
import {
  type StreamConsumerInput,
  streamConsumerWorkflow,
  type StreamProgress,
  streamProgressQuery,
  stopSignal,
} from '../workflows/stream-consumer';

/** What identifies a stream consumer. */
export interface StreamConsumerRef {
  applicationName: string;
  streamName: string;
}

export interface StartStreamConsumerOptions extends StreamConsumerRef {
  /** Name of the record processor factory registered on the workers. @default 'default' */
  processor?: string;
  /** @default 'temporal-kcl' */
  taskQueue?: string;
  /** Lease table. @default the application name */
  tableName?: string;
  /**
   * Java KCL's multi-stream lease layout, so that several streams share the table (see StreamConsumerInput).
   * @default false
   */
  multiStream?: boolean;
  /** Options of every shard consumer (initial position, maxRecords, ...). */
  shardOptions?: ShardConsumerOptions;
  /** @default 10000 */
  shardSyncIntervalMs?: number;
  /** Workflow task timeout of the shard consumers (see StreamConsumerInput). @default 2000 */
  shardWorkflowTaskTimeoutMs?: number;
  /** How often shard consumers started by an earlier run are checked on (see StreamConsumerInput). @default 60000 */
  shardAuditIntervalMs?: number;
  /** Balance the shards over the workers with `moveShard` signals (see StreamConsumerInput). @default true */
  placement?: boolean;
  /**
   * Tag the workflows with the KclApplication/KclStream/KclShard/KclState search attributes, so the Temporal UI can list
   * and filter them. They must be registered on the namespace (the dev stack does; see the README for production).
   * @default true
   */
  searchAttributes?: boolean;
}

/** A consumer with this application and stream is already running. */
export class ConsumerAlreadyRunningError extends KclError {
  override readonly name = 'ConsumerAlreadyRunning';
  constructor(readonly workflowId: string) {
    super(`a consumer is already running as workflow ${workflowId}; stop it first (temporal-kcl stop)`);
  }
}

/** No consumer with this application and stream exists. */
export class ConsumerNotFoundError extends KclError {
  override readonly name = 'ConsumerNotFound';
  constructor(readonly workflowId: string) {
    super(`no consumer found: workflow ${workflowId} does not exist (start one with temporal-kcl start)`);
  }
}

function requireName(value: unknown, what: string): string {
  if (typeof value !== 'string' || value.trim().length === 0)
    throw new InvalidConfigError(`${what} must be a non-empty string`);
  return value;
}

/** Builds the stream consumer's input after validating it (the same checks the workflow makes). */
export function streamConsumerInput(options: StartStreamConsumerOptions): StreamConsumerInput {
  const applicationName = requireName(options.applicationName, 'application name');
  const streamName = requireName(options.streamName, 'stream name');
  if (!/^[a-zA-Z0-9_.-]{1,128}$/.test(streamName)) {
    throw new InvalidConfigError(
      `stream name '${streamName}' is not a valid Kinesis stream name (1-128 of a-z A-Z 0-9 _ . -)`,
    );
  }
  const validation = validateShardConsumerOptions(options.shardOptions);
  if (!validation.ok)
    throw new InvalidConfigError(`invalid shard options: ${validation.issues.join('; ')}`, validation.issues);
  // The workflow checks the same, but only once started: refuse here so that nothing is started.
  const tableName = options.tableName ?? defaultTableName(applicationName);
  const problems = streamConsumerSettingsProblems({
    shardSyncIntervalMs: options.shardSyncIntervalMs,
    shardWorkflowTaskTimeoutMs: options.shardWorkflowTaskTimeoutMs,
    shardAuditIntervalMs: options.shardAuditIntervalMs,
    tableName,
  });
  if (problems.length > 0) throw new InvalidConfigError(problems.join('; '), problems);
  return {
    applicationName,
    streamName,
    processor: requireName(options.processor ?? 'default', 'processor name'),
    tableName,
    ...(options.multiStream ? { multiStream: true } : {}),
    ...(options.placement === false ? { placement: false } : {}),
    ...(options.shardOptions ? { shardOptions: options.shardOptions } : {}),
    ...(options.shardSyncIntervalMs !== undefined ? { shardSyncIntervalMs: options.shardSyncIntervalMs } : {}),
    ...(options.shardWorkflowTaskTimeoutMs !== undefined
      ? { shardWorkflowTaskTimeoutMs: options.shardWorkflowTaskTimeoutMs }
      : {}),
    ...(options.shardAuditIntervalMs !== undefined ? { shardAuditIntervalMs: options.shardAuditIntervalMs } : {}),
  };
}

/** Starts the consumer of a whole stream. A second one for the same application and stream is rejected. */
export async function startStreamConsumer(
  client: Client,
  options: StartStreamConsumerOptions,
): Promise<WorkflowHandle<typeof streamConsumerWorkflow>> {
  const input = streamConsumerInput(options);
  const workflowId = streamConsumerWorkflowId(input.applicationName, input.streamName);
  try {
    return await client.workflow.start(streamConsumerWorkflow, {
      args: [input],
      taskQueue: options.taskQueue ?? DEFAULT_TASK_QUEUE,
      workflowId,
      workflowIdConflictPolicy: 'FAIL',
      staticSummary: `Kinesis stream ${input.streamName} (application ${input.applicationName})`,
      staticDetails: [
        '**Stream consumer** of temporal-kcl',
        // A blank line before the list, or the UI's markdown runs the items into one line.
        '',
        `- application: \`${input.applicationName}\``,
        `- stream: \`${input.streamName}\``,
        `- lease table: \`${input.tableName}\``,
        `- processor: \`${input.processor}\``,
      ].join('\n'),
      ...((options.searchAttributes ?? true)
        ? {
            typedSearchAttributes: [
              { key: KCL_APPLICATION, value: input.applicationName },
              { key: KCL_STREAM, value: input.streamName },
              { key: KCL_STATE, value: 'RUNNING' },
            ],
          }
        : {}),
    });
  } catch (error) {
    if ((error as { name?: string }).name === 'WorkflowExecutionAlreadyStartedError')
      throw new ConsumerAlreadyRunningError(workflowId);
    throw error;
  }
}

async function withConsumer<T>(
  client: Client,
  ref: StreamConsumerRef,
  fn: (handle: WorkflowHandle<typeof streamConsumerWorkflow>) => Promise<T>,
): Promise<T> {
  const workflowId = streamConsumerWorkflowId(ref.applicationName, ref.streamName);
  try {
    return await fn(client.workflow.getHandle<typeof streamConsumerWorkflow>(workflowId));
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) throw new ConsumerNotFoundError(workflowId);
    throw error;
  }
}

/**
 * Asks the stream consumer to stop: every shard consumer gets `shutdown(REQUESTED)`. With `wait`, resolves once all have
 * stopped and the stream consumer has completed.
 */
export async function stopStreamConsumer(
  client: Client,
  ref: StreamConsumerRef & {
    wait?: boolean;
    /** `retrieval: 'fan-out'`: deregister the enhanced fan-out consumer once every shard has stopped. */
    deregisterConsumer?: boolean;
  },
) {
  return withConsumer(client, ref, async (handle) => {
    if (ref.deregisterConsumer) await handle.signal(stopSignal, { deregisterConsumer: true });
    else await handle.signal(stopSignal);
    return ref.wait ? await handle.result() : undefined;
  });
}

/** A shard's state when its consumer runs but no worker answered its query (no worker polls the task queue). */
export const WAITING_FOR_WORKER = 'WAITING_FOR_WORKER';

export interface StreamStatus {
  stream: StreamProgress;
  /** One entry per shard the consumer started, with the shard consumer's own progress when it could be queried. */
  shards: (StreamProgress['shards'][number] & {
    progress?: ShardProgress;
    error?: string;
    /** Set when the query went unanswered: the last state the consumer recorded in the KclState search attribute. */
    lastKnownState?: string;
    /** Set when the query went unanswered: the shard's lease, read from the lease table. */
    lease?: Lease;
  })[];
  /** Where the numbers come from: the consumers' queries, or (no live worker) search attributes and the lease table. */
  source: 'queries' | 'search-attributes-and-lease-table';
}

export interface StreamProgressOptions {
  /** Shard queries in flight at once. @default 16 */
  concurrency?: number;
  /** How long a query may wait for a worker to answer it before the fallback applies. @default 5000 */
  queryTimeoutMs?: number;
  /** The lease table, read when the consumers' queries cannot be answered (no live worker). */
  leases?: () => Promise<Lease[]>;
}

/** The progress of an ended shard consumer, from its result. */
function progressFromResult(result: ShardConsumerResult): ShardProgress {
  return {
    applicationName: result.applicationName,
    streamName: result.streamName,
    shardId: result.shardId,
    state: 'ENDED',
    parentShardIds: [],
    ...(result.checkpoint !== undefined ? { checkpoint: result.checkpoint } : {}),
    ...(result.lastProcessed ? { lastProcessed: result.lastProcessed } : {}),
    counters: result.counters,
    recentDeaggregationFailures: [],
    recentDeadLetters: [],
    run: 0,
  };
}

/**
 * A windowed consumer's workflow knows its position as of its last window; the running window reports newer in its
 * heartbeats (kept by the server with the pending activity: reading them costs no action). The newer of the two.
 */
export async function withWindowProgress(
  client: Client,
  handle: WorkflowHandle<typeof shardConsumerWorkflow>,
  progress: ShardProgress,
): Promise<ShardProgress> {
  if (progress.execution !== 'windowed') return progress;
  const description = await handle.describe();
  const window = description.raw.pendingActivities?.find(
    (activity) => activity.activityType?.name === 'processWindow' && activity.heartbeatDetails?.payloads?.length,
  );
  if (!window) return progress;
  const [details] = (await decodeArrayFromPayloads(
    client.workflow.options.loadedDataConverter,
    window.heartbeatDetails?.payloads,
  )) as [WindowHeartbeat | undefined];
  if (!details || details.recordsProcessed < progress.counters.recordsProcessed) return progress;
  return {
    ...progress,
    ...(details.lastProcessed ? { lastProcessed: details.lastProcessed } : {}),
    ...(details.checkpoint !== undefined ? { checkpoint: details.checkpoint } : {}),
    ...(details.millisBehindLatest !== undefined ? { millisBehindLatest: details.millisBehindLatest } : {}),
    counters: { ...progress.counters, recordsProcessed: details.recordsProcessed, batches: details.batches },
  };
}

/** The stream consumer's shards and each shard consumer's progress (position, counts, lag). */
export async function getStreamProgress(
  client: Client,
  ref: StreamConsumerRef,
  options: StreamProgressOptions | number = {},
): Promise<StreamStatus> {
  const {
    concurrency = 16,
    queryTimeoutMs = 5_000,
    leases,
  } = typeof options === 'number' ? { concurrency: options } : options;
  const withTimeout = <T>(fn: () => Promise<T>) => client.connection.withDeadline(Date.now() + queryTimeoutMs, fn);
  let stream: StreamProgress;
  try {
    stream = await withConsumer(client, ref, (handle) => withTimeout(() => handle.query(streamProgressQuery)));
  } catch (error) {
    if (error instanceof ConsumerNotFoundError) throw error;
    // No worker answered: what Temporal's visibility and the lease table know, without a worker.
    return await statusWithoutWorker(client, ref, leases, error);
  }
  const shards: StreamStatus['shards'] = stream.shards.map((shard) => ({ ...shard }));
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, shards.length) }, async () => {
      while (next < shards.length) {
        const shard = shards[next++];
        if (!shard) continue;
        try {
          const handle = client.workflow.getHandle<typeof shardConsumerWorkflow>(
            shardConsumerWorkflowId(ref.applicationName, ref.streamName, shard.shardId),
          );
          // An ended consumer's result holds its final position: no worker needed to answer.
          shard.progress =
            shard.state === 'RUNNING'
              ? await withWindowProgress(client, handle, await withTimeout(() => handle.query(progressQuery)))
              : progressFromResult(await handle.result());
        } catch (error) {
          shard.error = error instanceof Error ? error.message : String(error);
        }
      }
    }),
  );
  return { stream, shards, source: 'queries' };
}

function quoted(value: string): string {
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/**
 * The status when the stream consumer's query cannot be answered: its state from `describe`, the shard consumers and
 * their last recorded state from the Kcl* search attributes, positions and owners from the lease table.
 */
async function statusWithoutWorker(
  client: Client,
  ref: StreamConsumerRef,
  leases: StreamProgressOptions['leases'],
  queryError: unknown,
): Promise<StreamStatus> {
  const streamId = streamConsumerWorkflowId(ref.applicationName, ref.streamName);
  const description = await client.workflow.getHandle(streamId).describe();
  const running = description.status.name === 'RUNNING';
  const shards = new Map<string, StreamStatus['shards'][number]>();
  const prefix = `${streamId}/`;
  try {
    const query = `${KCL_APPLICATION.name} = ${quoted(ref.applicationName)} AND ${KCL_STREAM.name} = ${quoted(ref.streamName)}`;
    for await (const execution of client.workflow.list({ query })) {
      if (!execution.workflowId.startsWith(prefix)) continue;
      const shardId = execution.workflowId.slice(prefix.length);
      const shardRunning = execution.status.name === 'RUNNING';
      const recorded = execution.typedSearchAttributes.get(KCL_STATE);
      shards.set(shardId, {
        shardId,
        workflowId: execution.workflowId,
        state: shardRunning ? 'RUNNING' : 'ENDED',
        ...(shardRunning ? {} : { reason: 'CLOSED' as const }),
        ...(recorded ? { lastKnownState: recorded } : {}),
      });
    }
  } catch {
    // Without the search attributes (--no-search-attributes), the lease table alone lists the shards.
  }
  const leaseList = leases ? await leases().catch(() => [] as Lease[]) : [];
  for (const lease of leaseList) {
    const known = shards.get(lease.shardId);
    const ended = lease.checkpoint === 'SHARD_END';
    shards.set(lease.shardId, {
      shardId: lease.shardId,
      workflowId: shardConsumerWorkflowId(ref.applicationName, ref.streamName, lease.shardId),
      state: known?.state ?? (ended || !running ? 'ENDED' : 'RUNNING'),
      ...(known?.reason ? { reason: known.reason } : ended ? { reason: 'TERMINATE' as const } : {}),
      ...(known?.lastKnownState ? { lastKnownState: known.lastKnownState } : {}),
      lease,
    });
  }
  const detail = queryError instanceof Error ? queryError.message : String(queryError);
  const list = [...shards.values()]
    .sort((a, b) => (a.shardId < b.shardId ? -1 : a.shardId > b.shardId ? 1 : 0))
    .map((shard) => ({
      ...shard,
      ...(shard.state === 'RUNNING' ? { error: `no worker answered (${detail})` } : {}),
    }));
  return {
    stream: {
      applicationName: ref.applicationName,
      streamName: ref.streamName,
      state: running ? 'RUNNING' : 'ENDED',
      shards: list.map(({ shardId, workflowId, state, reason }) => ({
        shardId,
        workflowId,
        state,
        ...(reason ? { reason } : {}),
      })),
      started: list.length,
      restarts: 0,
      run: 0,
    },
    shards: list,
    source: 'search-attributes-and-lease-table',
  };
}

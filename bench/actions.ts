/**
 * 6. Temporal actions (issue 9): the dev server's own `action` counter (Prometheus, `--metrics-port`), the counter
 * Temporal documents for estimating Temporal Cloud actions, summed by `action_type` over a measurement window after a
 * warm-up, for each execution:
 *
 * - idle: a 4-shard stream with nothing arriving;
 * - busy: the same stream at 50, 500 and 2,000 user records/s per shard (at 2,000/s as KPL aggregates of 10 user
 *   records: a real shard takes at most 1,000 Kinesis records/s);
 * - scale: 64 shards at 50 records/s each on one worker.
 *
 * Consumers start as users start them: a stream consumer through the client (default options, TRIM_HORIZON), one worker
 * process. Every action of the namespace in the window counts, the stream consumer's included (its share is estimated
 * from its history and shown apart).
 */
import type { KinesisClient } from '@aws-sdk/client-kinesis';
import type { WorkflowHandle } from '@temporalio/client';
import { optionalTsToMs } from '@temporalio/common/lib/time';
import { temporal } from '@temporalio/proto';
import { createKinesisClient } from '../src/aws/clients';
import { startStreamConsumer } from '../src/client/consumers';
import { defaultTableName } from '../src/ids';
import { validateShardConsumerOptions } from '../src/options';
import { EmulatorChild, type WorkerChild } from './lib/children';
import type { BenchContext } from './lib/context';
import {
  EXECUTIONS,
  type Execution,
  executionOptions,
  executionUnavailable,
  isUnknownExecutionOption,
  NOT_AVAILABLE,
} from './lib/executions';
import { type BenchShard, createStream, deleteStream, RateProducer, uniqueName } from './lib/kinesis';
import { counterDelta, scrapeActions } from './lib/prometheus';
import type { BatchReport } from './lib/protocol';
import { STOP_TIMEOUT_MS, stopOrTerminate } from './lib/shard-run';
import { round } from './lib/stats';

const { EventType } = temporal.api.enums.v1;

/** Seconds in a 30-day month, for projections. */
export const SECONDS_PER_MONTH = 2_592_000;
/** Temporal Cloud's default actions-per-second limit of a namespace. */
export const NAMESPACE_ACTIONS_PER_SECOND = 500;
/** Issue 9's targets. */
export const ACTION_TARGETS = {
  idleActionsPerShardSecond: 0.05,
  windowedBusyActionsPerShardSecond: 0.2,
  perBatchActionsPerBatch: 3,
} as const;

const RECORD_BYTES = 256;
const BUSY_RATES = [50, 500, 2_000] as const;
/** Above a real shard's 1,000 Kinesis records/s, the producer aggregates this many user records per Kinesis record. */
const KPL_USER_RECORDS = 10;
const SCALE_SHARDS = 64;
const SCALE_RATE = 50;
/** Mean put → processRecords above this: the consumers did not keep up. */
const KEEP_UP_LAG_MS = 5_000;

export type ActionsCaseKind = 'idle' | 'busy' | 'scale';

/** Whether a case meets its issue-9 target. */
export interface ActionsTarget {
  /** e.g. '≤ 0.05 actions per shard-second (idle)'. */
  text: string;
  limit: number;
  /** The figure the target is about, all actions of the namespace counted. */
  value: number | null;
  met: boolean;
  /** The same figure without the stream consumer's own actions (estimated from its history). */
  valueShardConsumersOnly: number | null;
  metShardConsumersOnly: boolean;
}

export interface ActionsCase {
  execution: Execution;
  name: string;
  kind: ActionsCaseKind;
  shards: number;
  /** User records per second per shard the producer aimed at (0: idle). */
  ratePerShard: number;
  /** User records per Kinesis record (> 1: KPL aggregates). */
  userRecordsPerKinesisRecord: number;
  recordBytes: number;
  available: boolean;
  /** Why the case did not run (an execution this build does not have). */
  unavailable?: string;
  windowSeconds?: number;
  warmUpSeconds?: number;
  /** Actions in the window, all of the namespace. */
  actions?: number;
  actionsByType?: Record<string, number>;
  /** Actions of the stream consumer in the window, estimated from its history (one per command event, signal). */
  streamConsumerActions?: number;
  /** User records processed in the window, and processRecords calls with records. */
  records?: number;
  batches?: number;
  producedPerSecPerShard?: number;
  deliveredPerSecPerShard?: number;
  /** put → processRecords, mean over the window's records (ms). */
  lagMeanMs?: number | null;
  /**
   * The consumers kept up: delivered ≥ 90% of what was produced in the window, lag mean ≤ 5 s. A worker that falls
   * behind reads bigger, fewer batches, so its actions per shard-second understate the cost of one that keeps up.
   */
  keepsUp?: boolean;
  /** The producer reached less than 90% of the target rate (the machine or the emulator was the limit). */
  producerLimited?: boolean;
  actionsPerShardSecond?: number;
  actionsPerShardSecondByType?: Record<string, number>;
  actionsPerShardSecondShardConsumersOnly?: number;
  actionsPer1000Records?: number | null;
  actionsPerBatch?: number | null;
  actionsPerShardMonth?: number;
  /** Shards whose actions fit in a namespace's default 500 actions/s, at this case's rate per shard. */
  shardsPerNamespace?: number | null;
  target?: ActionsTarget;
}

export interface ActionsResult {
  emulator: string;
  metrics: string;
  namespace: string;
  cases: ActionsCase[];
}

interface CaseSpec {
  name: string;
  kind: ActionsCaseKind;
  shards: number;
  ratePerShard: number;
  userRecordsPerKinesisRecord: number;
}

const CASES: CaseSpec[] = [
  { name: 'idle', kind: 'idle', shards: 4, ratePerShard: 0, userRecordsPerKinesisRecord: 1 },
  ...BUSY_RATES.map((rate): CaseSpec => ({
    name: `busy ${rate}/s`,
    kind: 'busy',
    shards: 4,
    ratePerShard: rate,
    userRecordsPerKinesisRecord: rate > 1_000 ? KPL_USER_RECORDS : 1,
  })),
  {
    name: `scale ${SCALE_SHARDS} shards × ${SCALE_RATE}/s`,
    kind: 'scale',
    shards: SCALE_SHARDS,
    ratePerShard: SCALE_RATE,
    userRecordsPerKinesisRecord: 1,
  },
];

/** The default `maxIdleWaitMs` of this build's shard options; undefined in a build without it. */
function defaultMaxIdleWaitMs(): number | undefined {
  const validation = validateShardConsumerOptions({});
  if (!validation.ok) return undefined;
  // Typed loosely on purpose: builds before issue 9 have no maxIdleWaitMs.
  const value = (validation.options as { maxIdleWaitMs?: unknown }).maxIdleWaitMs;
  return typeof value === 'number' ? value : undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, predicate: () => boolean, timeoutMs: number, died: Promise<never>) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await Promise.race([sleep(100), died]);
  }
}

/** History events that each stand for (about) one action: commands the workflow gave, signals it received. */
const ACTION_EVENTS = new Set<number>([
  EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
  EventType.EVENT_TYPE_TIMER_STARTED,
  EventType.EVENT_TYPE_MARKER_RECORDED,
  EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED,
  EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
  EventType.EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
  EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
  EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED,
  EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
  EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
]);

/** Action-like events of the workflow's current run recorded between `from` and `to` (epoch ms). */
async function actionEventsBetween(handle: WorkflowHandle, from: number, to: number): Promise<number> {
  const events = (await handle.fetchHistory()).events ?? [];
  return events.filter((event) => {
    const at = optionalTsToMs(event.eventTime) ?? Number.NaN;
    return at >= from && at <= to && ACTION_EVENTS.has(event.eventType ?? 0);
  }).length;
}

/** A stream consumer on its own stream, and what its worker reported about it. */
interface Consumer {
  applicationName: string;
  streamName: string;
  shards: BenchShard[];
  handle: WorkflowHandle;
  batches: BatchReport[];
  stopListening: () => void;
}

type Started = { consumer: Consumer } | { unavailable: string };

async function startConsumer(
  context: BenchContext,
  kinesis: KinesisClient,
  worker: WorkerChild,
  taskQueue: string,
  shardCount: number,
  execution: Execution,
  died: Promise<never>,
): Promise<Started> {
  const { streamName, shards } = await createStream(kinesis, shardCount, `bench-actions-${shardCount}`);
  const applicationName = uniqueName('app-actions');
  await context.createLeaseTable(defaultTableName(applicationName));
  const initialized = new Set<string>();
  const batches: BatchReport[] = [];
  const stopListening = worker.onMessage((message) => {
    if (message.type === 'initialize' && message.applicationName === applicationName) initialized.add(message.shardId);
    if (message.type === 'batch' && message.applicationName === applicationName && message.records > 0) {
      batches.push(message);
    }
  });
  let handle: WorkflowHandle;
  try {
    handle = await startStreamConsumer(context.client, {
      applicationName,
      streamName,
      processor: 'bench',
      taskQueue,
      shardOptions: { initialPosition: 'TRIM_HORIZON', ...executionOptions(execution) },
    });
  } catch (error) {
    stopListening();
    await deleteStream(kinesis, streamName);
    if (isUnknownExecutionOption(error)) return { unavailable: NOT_AVAILABLE };
    throw error;
  }
  const consumer = { applicationName, streamName, shards, handle, batches, stopListening };
  try {
    await waitFor(`${shardCount} shard processors initialized`, () => initialized.size === shardCount, 180_000, died);
  } catch (error) {
    await stopConsumer(context, kinesis, consumer);
    throw error;
  }
  return { consumer };
}

async function stopConsumer(context: BenchContext, kinesis: KinesisClient, consumer: Consumer): Promise<void> {
  consumer.stopListening();
  await stopOrTerminate(consumer.handle, STOP_TIMEOUT_MS, (line) => context.log(`  actions: stopping: ${line}`));
  await deleteStream(kinesis, consumer.streamName);
}

const perOrNull = (value: number, by: number, digits: number) => (by > 0 ? round(value / by, digits) : null);

function targetOf(
  execution: Execution,
  spec: CaseSpec,
  figures: Required<Pick<ActionsCase, 'actions' | 'streamConsumerActions' | 'batches' | 'windowSeconds'>>,
): ActionsTarget {
  const shardSeconds = spec.shards * figures.windowSeconds;
  const shardConsumerActions = figures.actions - figures.streamConsumerActions;
  const check = (text: string, limit: number, value: number | null, valueShardConsumersOnly: number | null) => ({
    text,
    limit,
    value,
    met: value !== null && value <= limit,
    valueShardConsumersOnly,
    metShardConsumersOnly: valueShardConsumersOnly !== null && valueShardConsumersOnly <= limit,
  });
  if (spec.kind === 'idle') {
    const limit = ACTION_TARGETS.idleActionsPerShardSecond;
    return check(
      `≤ ${limit} actions per shard-second (idle)`,
      limit,
      round(figures.actions / shardSeconds, 4),
      round(shardConsumerActions / shardSeconds, 4),
    );
  }
  if (execution === 'windowed') {
    const limit = ACTION_TARGETS.windowedBusyActionsPerShardSecond;
    return check(
      `≤ ${limit} actions per shard-second (busy, windowed)`,
      limit,
      round(figures.actions / shardSeconds, 4),
      round(shardConsumerActions / shardSeconds, 4),
    );
  }
  const limit = ACTION_TARGETS.perBatchActionsPerBatch;
  return check(
    `≤ ${limit} actions per batch (busy, per-batch)`,
    limit,
    perOrNull(figures.actions, figures.batches, 2),
    perOrNull(shardConsumerActions, figures.batches, 2),
  );
}

async function measureWindow(
  context: BenchContext,
  consumer: Consumer,
  execution: Execution,
  spec: CaseSpec,
  producer: RateProducer | undefined,
  warmUpSeconds: number,
  windowSeconds: number,
  died: Promise<never>,
): Promise<ActionsCase> {
  const { metricsUrl, metricsUrls, namespace } = context.stack.temporal;
  const endpoints = metricsUrls ?? [metricsUrl!];
  await Promise.race([sleep(warmUpSeconds * 1_000), died]);
  const producedBefore = producer?.produced ?? 0;
  const before = await scrapeActions(endpoints, namespace);
  const from = Date.now();
  await Promise.race([sleep(windowSeconds * 1_000), died]);
  const after = await scrapeActions(endpoints, namespace);
  const to = Date.now();
  const producedInWindow = (producer?.produced ?? 0) - producedBefore;
  const seconds = (to - from) / 1_000;
  const inWindow = consumer.batches.filter((batch) => batch.at >= from && batch.at <= to);
  const records = inWindow.reduce((sum, batch) => sum + batch.records, 0);
  const lagSum = inWindow.reduce((sum, batch) => sum + (batch.lagSumMs ?? 0), 0);
  const streamConsumerActions = await actionEventsBetween(consumer.handle, from, to);
  const byType = counterDelta(before, after);
  const actions = Object.values(byType).reduce((sum, value) => sum + value, 0);
  const shardSeconds = spec.shards * seconds;
  const perShardSecond = actions / shardSeconds;
  const actionsPerShardSecondByType: Record<string, number> = {};
  for (const [type, count] of Object.entries(byType).sort((a, b) => b[1] - a[1])) {
    actionsPerShardSecondByType[type] = round(count / shardSeconds, 4);
  }
  const result: ActionsCase = {
    execution,
    name: spec.name,
    kind: spec.kind,
    shards: spec.shards,
    ratePerShard: spec.ratePerShard,
    userRecordsPerKinesisRecord: spec.userRecordsPerKinesisRecord,
    recordBytes: RECORD_BYTES,
    available: true,
    windowSeconds: round(seconds, 1),
    warmUpSeconds,
    actions,
    actionsByType: byType,
    streamConsumerActions,
    records,
    batches: inWindow.length,
    producedPerSecPerShard: round(producedInWindow / shardSeconds, 1),
    deliveredPerSecPerShard: round(records / shardSeconds, 1),
    lagMeanMs: records > 0 ? round(lagSum / records, 0) : null,
    keepsUp: records >= 0.9 * producedInWindow && (records === 0 || lagSum / records <= KEEP_UP_LAG_MS),
    producerLimited: spec.ratePerShard > 0 && producedInWindow < 0.9 * spec.ratePerShard * shardSeconds,
    actionsPerShardSecond: round(perShardSecond, 4),
    actionsPerShardSecondByType,
    actionsPerShardSecondShardConsumersOnly: round((actions - streamConsumerActions) / shardSeconds, 4),
    actionsPer1000Records: perOrNull(1_000 * actions, records, 2),
    actionsPerBatch: perOrNull(actions, inWindow.length, 2),
    actionsPerShardMonth: Math.round(perShardSecond * SECONDS_PER_MONTH),
    shardsPerNamespace: perShardSecond > 0 ? Math.floor(NAMESPACE_ACTIONS_PER_SECOND / perShardSecond) : null,
  };
  result.target = targetOf(execution, spec, {
    actions,
    streamConsumerActions,
    batches: inWindow.length,
    windowSeconds: seconds,
  });
  const types = Object.entries(actionsPerShardSecondByType)
    .map(([type, value]) => `${type} ${value}`)
    .join(', ');
  context.log(
    `  ${execution} ${spec.name}: ${actions} actions in ${result.windowSeconds} s (${result.streamConsumerActions} the stream consumer's) = ` +
      `${result.actionsPerShardSecond} per shard-second [${types}]; ${records} records in ${result.batches} batches ` +
      `(${result.actionsPer1000Records ?? '-'} per 1,000 records, ${result.actionsPerBatch ?? '-'} per batch); ` +
      `produced ${result.producedPerSecPerShard} / delivered ${result.deliveredPerSecPerShard} rec/s per shard, ` +
      `lag mean ${result.lagMeanMs ?? '-'} ms${result.keepsUp ? '' : ' (DID NOT keep up)'}` +
      `${result.producerLimited ? ' (producer-limited)' : ''}; target ${result.target.text}: ${result.target.met ? 'met' : 'NOT met'}`,
  );
  return result;
}

function unavailableCase(execution: Execution, spec: CaseSpec, why: string): ActionsCase {
  return { execution, ...spec, recordBytes: RECORD_BYTES, available: false, unavailable: why };
}

async function measureExecution(
  context: BenchContext,
  emulator: { child: EmulatorChild; kinesis: KinesisClient },
  execution: Execution,
): Promise<ActionsCase[]> {
  const unavailable = executionUnavailable(execution);
  if (unavailable) {
    context.log(`  ${execution}: ${unavailable}`);
    return CASES.map((spec) => unavailableCase(execution, spec, unavailable));
  }
  const { quick } = context.settings;
  const windowSeconds = quick ? 15 : 60;
  const warmUpSeconds = quick ? 5 : 15;
  // A quiet shard's read waits longer and longer for records (2 s, 4 s, ... up to maxIdleWaitMs): idle is steady only
  // after the waits reached maxIdleWaitMs, and then costs its actions once per maxIdleWaitMs per shard.
  const maxIdleWaitSeconds = (defaultMaxIdleWaitMs() ?? 0) / 1_000;
  const idleWarmUpSeconds = Math.max(warmUpSeconds, 2 * maxIdleWaitSeconds);
  const idleWindowSeconds = Math.max(quick ? 30 : 120, (quick ? 2 : 4) * maxIdleWaitSeconds);
  // 64 shards take longer to settle (their first reads, continue-as-new and the worker's caches).
  const scaleWarmUpSeconds = quick ? 10 : 30;
  const taskQueue = uniqueName('bench-actions');
  const worker = await context.startWorker({
    name: `actions-${execution}`,
    processorMode: 'lag',
    taskQueue,
    kinesisEndpoint: emulator.child.endpoint,
  });
  const died = worker.exited.then((how): never => {
    throw new Error(`worker exited (${String(how)})\n${worker.stderr}`);
  });
  died.catch(() => undefined);
  const cases: ActionsCase[] = [];
  try {
    for (const shardCount of [4, SCALE_SHARDS]) {
      const specs = CASES.filter((spec) => spec.shards === shardCount);
      const started = await startConsumer(context, emulator.kinesis, worker, taskQueue, shardCount, execution, died);
      if ('unavailable' in started) {
        context.log(`  ${execution}: ${started.unavailable}`);
        return CASES.map((spec) => unavailableCase(execution, spec, started.unavailable));
      }
      const { consumer } = started;
      let producer: RateProducer | undefined;
      try {
        for (const spec of specs) {
          await producer?.stop();
          producer = undefined;
          if (spec.ratePerShard > 0) {
            producer = new RateProducer(
              emulator.kinesis,
              consumer.streamName,
              consumer.shards,
              spec.ratePerShard,
              RECORD_BYTES,
              100,
              spec.userRecordsPerKinesisRecord,
            );
            producer.start();
          }
          const window = spec.kind === 'idle' ? idleWindowSeconds : windowSeconds;
          const warmUp =
            spec.kind === 'scale' ? scaleWarmUpSeconds : spec.kind === 'idle' ? idleWarmUpSeconds : warmUpSeconds;
          cases.push(await measureWindow(context, consumer, execution, spec, producer, warmUp, window, died));
        }
      } finally {
        await producer?.stop();
        await stopConsumer(context, emulator.kinesis, consumer);
      }
    }
  } finally {
    await worker.stop();
  }
  return cases;
}

export async function measureActions(context: BenchContext): Promise<ActionsResult> {
  const { metricsUrl, namespace } = context.stack.temporal;
  if (!metricsUrl) throw new Error('the Temporal dev server runs without --metrics-port: no action counter to read');
  const child = await EmulatorChild.start(context.logDir);
  const kinesis = createKinesisClient({ ...context.stack.aws, kinesisEndpoint: child.endpoint });
  try {
    const cases: ActionsCase[] = [];
    for (const execution of context.settings.executions ?? EXECUTIONS) {
      cases.push(...(await measureExecution(context, { child, kinesis }, execution)));
    }
    const metrics = context.stack.temporal.metricsUrls?.join(' + ') ?? metricsUrl;
    return { emulator: 'kinesalite (own process)', metrics, namespace, cases };
  } finally {
    kinesis.destroy();
    await child.stop();
  }
}

/**
 * 4. Failover: a shard under steady load, two worker processes; SIGKILL the one holding the shard and time until the
 * shard's next batch is processed by the other. Each trial then starts a replacement worker, so two are always running.
 * Measured with the library's defaults and with the settings this benchmark recommends.
 */
import type { WorkflowHandle } from '@temporalio/client';
import { defaultTableName, workerTaskQueue } from '../src/ids';
import {
  DEFAULT_SHARD_WORKFLOW_TASK_TIMEOUT_MS,
  type ResolvedShardConsumerOptions,
  type ShardConsumerOptions,
  validateShardConsumerOptions,
} from '../src/options';
import { DEFAULT_STICKY_QUEUE_TIMEOUT_MS } from '../src/worker';
import type { WorkerChild } from './lib/children';
import type { BenchContext } from './lib/context';
import { createStream, deleteStream, prefill, RateProducer, uniqueName } from './lib/kinesis';
import {
  historyEvents,
  lastWorkflowWorker,
  replayAfter,
  timelineBetween,
  timeoutsBetween,
  type TimeoutEvent,
} from './lib/history';
import type { BatchReport } from './lib/protocol';
import { startShardConsumer, STOP_TIMEOUT_MS, stopOrTerminate, type WorkflowTaskTimeout } from './lib/shard-run';
import { max, median, round } from './lib/stats';

const RATE = 20;
/** Batches before a kill in the long-history scenario: a run continues as new at ~4000 history events (~400 batches: Temporal suggests it), so this is close to the longest history a worker replays. */
const LONG_HISTORY_BATCHES = 370;
const RECORD_BYTES = 100;
/** Temporal's own workflow task timeout, which a shard consumer gets when the settings leave it undefined. */
const TEMPORAL_WORKFLOW_TASK_TIMEOUT: WorkflowTaskTimeout = '10s';

export interface FailoverSettings {
  name: string;
  shardOptions: Pick<
    ShardConsumerOptions,
    | 'heartbeatTimeoutMs'
    | 'workerScheduleToStartTimeoutMs'
    | 'maxBatchesPerRun'
    | 'execution'
    | 'windowHeartbeatTimeoutMs'
  >;
  /** createKclWorker's stickyQueueScheduleToStartTimeoutMs; undefined: the library default (500). */
  stickyQueueScheduleToStartTimeoutMs?: number;
  /** The shard consumer's workflow task timeout; undefined: Temporal's default (10 s). */
  workflowTaskTimeout?: WorkflowTaskTimeout;
}

/**
 * The library's defaults, with the workflow task timeout the stream consumer gives its shard consumers (this benchmark
 * starts shard consumers directly, so it sets it as the stream consumer would).
 */
export const DEFAULT_SETTINGS: FailoverSettings = {
  name: 'library defaults',
  shardOptions: {},
  workflowTaskTimeout: DEFAULT_SHARD_WORKFLOW_TASK_TIMEOUT_MS,
};

/**
 * How the library's defaults were chosen. A dead worker is noticed by whichever timeout its shard is waiting on: the
 * pinned worker's heartbeat (a read or batch in flight; non-retryable on a pinned task, so the shard moves at once),
 * the pinned queue's schedule-to-start (nothing in flight), the sticky queue's (the workflow task; cheap when it fires
 * spuriously: another worker replays the history) or the workflow task timeout (a task in flight on the dead worker);
 * then the worker taking over replays the current run (kept short by maxBatchesPerRun). For comparison, the
 * relaxed settings the library started with: 5 s timeouts, Temporal's 10 s workflow task timeout, 500 batches a run.
 */
export const RELAXED_SETTINGS: FailoverSettings = {
  name: 'relaxed (5 s timeouts, 500 batches a run)',
  shardOptions: { heartbeatTimeoutMs: 5_000, workerScheduleToStartTimeoutMs: 5_000, maxBatchesPerRun: 500 },
  stickyQueueScheduleToStartTimeoutMs: 2_000,
  workflowTaskTimeout: '10s',
};

/**
 * The `windowed` execution at its defaults: a dead worker is noticed by the window's heartbeat timeout (10 s; heartbeats
 * every 7.5 s), the cost of its ~0.15 actions per busy shard-second.
 */
export const WINDOWED_SETTINGS: FailoverSettings = {
  name: 'windowed (library defaults)',
  shardOptions: { execution: 'windowed' },
  workflowTaskTimeout: DEFAULT_SHARD_WORKFLOW_TASK_TIMEOUT_MS,
};

/** Other candidates, for exploring (`--failover-sets`). */
export const CANDIDATE_SETTINGS: FailoverSettings[] = [
  DEFAULT_SETTINGS,
  WINDOWED_SETTINGS,
  {
    name: 'windowed, 4 s window heartbeat timeout',
    shardOptions: { execution: 'windowed', windowHeartbeatTimeoutMs: 4_000 },
    workflowTaskTimeout: DEFAULT_SHARD_WORKFLOW_TASK_TIMEOUT_MS,
  },
  RELAXED_SETTINGS,
  {
    name: 'aggressive',
    shardOptions: { heartbeatTimeoutMs: 1_000, workerScheduleToStartTimeoutMs: 500 },
    stickyQueueScheduleToStartTimeoutMs: 500,
    workflowTaskTimeout: '2s',
  },
  {
    name: 'fast',
    shardOptions: { heartbeatTimeoutMs: 2_000, workerScheduleToStartTimeoutMs: 500 },
    stickyQueueScheduleToStartTimeoutMs: 500,
    workflowTaskTimeout: '3s',
  },
  {
    name: 'timeouts only (sticky and workflow task at defaults)',
    shardOptions: { heartbeatTimeoutMs: 2_000, workerScheduleToStartTimeoutMs: 1_000 },
  },
  {
    name: 'conservative',
    shardOptions: { heartbeatTimeoutMs: 3_000, workerScheduleToStartTimeoutMs: 2_000 },
    stickyQueueScheduleToStartTimeoutMs: 1_000,
    workflowTaskTimeout: '5s',
  },
];

export interface FailoverResult {
  settings: {
    name: string;
    heartbeatTimeoutMs: number;
    workerScheduleToStartTimeoutMs: number;
    stickyQueueScheduleToStartTimeoutMs: number;
    workflowTaskTimeout: string;
  };
  emulator: string;
  ratePerSec: number;
  trials: number;
  /** SIGKILL → the shard's next batch processed by the other worker (ms), per trial. */
  failoverMs: number[];
  /**
   * Per trial: the timeouts Temporal recorded between the kill and the recovery (what the failover waited for), the
   * length of the run's history at the kill, and how long the worker taking over took to replay it.
   */
  trialDetails: {
    timeouts: TimeoutEvent[];
    historyEventsAtKill: number;
    replayMs: number;
    /** The killed worker also ran the workflow (its sticky cache): the other worker replays the history first. */
    killedWorkflowWorker: boolean;
  }[];
  /** Where in the consumer's life the kills landed. */
  scenario: string;
  maxBatchesPerRun: number;
  p50Ms: number;
  maxMs: number;
}

interface Event {
  worker: WorkerChild;
  batch: BatchReport;
}

/** Where in a consumer's life the kills land. */
interface Scenario {
  name: string;
  trials: number;
  /** Records per second while the trials run. */
  rate: number;
  /**
   * Records pre-filled and consumed one per batch (maxRecords 1) before the trials, to build a long history: a worker
   * that takes a shard over replays the current run's whole history first.
   */
  historyBatches?: number;
  maxBatchesPerRun?: number;
}

/** The settings' shard options with the library's defaults filled in; throws if they are invalid. */
function resolveSettings(settings: FailoverSettings): ResolvedShardConsumerOptions {
  const validation = validateShardConsumerOptions(settings.shardOptions);
  if (!validation.ok) throw new Error(`failover settings ${settings.name}: ${validation.issues.join('; ')}`);
  return validation.options;
}

async function measureSettings(
  context: BenchContext,
  settings: FailoverSettings,
  scenario: Scenario,
): Promise<FailoverResult> {
  const { trials } = scenario;
  const resolved = resolveSettings(settings);
  const taskQueue = uniqueName('bench-failover');
  const { streamName, shards } = await createStream(context.kinesis, 1, 'bench-failover');
  const shard = shards[0]!;
  const applicationName = uniqueName('app-failover');
  await context.createLeaseTable(defaultTableName(applicationName));
  const events: Event[] = [];
  const workers: WorkerChild[] = [];
  const startWorker = async () => {
    const worker = await context.startWorker({
      name: 'failover-worker',
      processorMode: 'count',
      taskQueue,
      ...(settings.stickyQueueScheduleToStartTimeoutMs !== undefined
        ? { stickyQueueScheduleToStartTimeoutMs: settings.stickyQueueScheduleToStartTimeoutMs }
        : {}),
    });
    worker.onMessage((message) => {
      if (message.type === 'batch' && message.applicationName === applicationName && message.records > 0) {
        events.push({ worker, batch: message });
      }
    });
    workers.push(worker);
    return worker;
  };
  const waitForEvent = async (predicate: (event: Event) => boolean, timeoutMs: number): Promise<Event> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = events.find(predicate);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`failover: no batch on the other worker within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  const producer = new RateProducer(context.kinesis, streamName, shards, scenario.rate, RECORD_BYTES);
  const failoverMs: number[] = [];
  const trialDetails: FailoverResult['trialDetails'] = [];
  const log = (line: string) => context.log(`  ${settings.name}${scenario.name ? `, ${scenario.name}` : ''}: ${line}`);
  let handle: WorkflowHandle | undefined;
  try {
    // Long history: one worker runs the workflow and the shard until the history is built, so the kill takes both.
    await Promise.all(scenario.historyBatches ? [startWorker()] : [startWorker(), startWorker()]);
    if (scenario.historyBatches) {
      await prefill(context.kinesis, streamName, { kind: 'plain', recordBytes: RECORD_BYTES }, scenario.historyBatches);
    } else {
      producer.start();
    }
    handle = await startShardConsumer(context, {
      taskQueue,
      applicationName,
      streamName,
      shard,
      workflowTaskTimeout: settings.workflowTaskTimeout ?? TEMPORAL_WORKFLOW_TASK_TIMEOUT,
      options: {
        initialPosition: 'TRIM_HORIZON',
        ...settings.shardOptions,
        ...(scenario.historyBatches ? { maxRecords: 1 } : {}),
        ...(scenario.maxBatchesPerRun ? { maxBatchesPerRun: scenario.maxBatchesPerRun } : {}),
      },
    });
    if (scenario.historyBatches) {
      // One record per batch: the history grows by a batch's events per record.
      const total = () => events.reduce((sum, event) => sum + event.batch.records, 0);
      const deadline = Date.now() + 300_000;
      while (total() < scenario.historyBatches) {
        if (Date.now() > deadline)
          throw new Error(`failover: ${total()} of ${scenario.historyBatches} records consumed`);
        await new Promise((r) => setTimeout(r, 100));
      }
      await startWorker();
      producer.start();
    }
    for (let trial = 0; trial < trials; trial++) {
      // Steady state: the shard has been delivering batches for a while on one worker.
      const settledFrom = Date.now();
      await waitForEvent((event) => event.batch.at > settledFrom + 2_000, 60_000);
      // A random phase, so kills land anywhere in the consumer's read/process/idle cycle.
      await new Promise((r) => setTimeout(r, Math.random() * 1_000));
      const historyEventsAtKill = Number((await handle.describe()).historyLength);
      const holder = events.at(-1)!.worker;
      const killedAt = Date.now();
      await holder.kill('SIGKILL');
      const next = await waitForEvent((event) => event.worker !== holder && event.batch.at > killedAt, 120_000);
      failoverMs.push(next.batch.at - killedAt);
      const history = await historyEvents(handle).catch(() => []);
      const waitedFor = timeoutsBetween(history, killedAt, next.batch.at);
      const replayMs = replayAfter(history, killedAt);
      const workflowWorker = lastWorkflowWorker(history, killedAt);
      const killedWorkflowWorker =
        workflowWorker !== undefined && holder.workerQueue === workerTaskQueue(taskQueue, workflowWorker);
      trialDetails.push({ timeouts: waitedFor, historyEventsAtKill, replayMs, killedWorkflowWorker });
      if (process.env.BENCH_DEBUG_FAILOVER) {
        const lines = timelineBetween(history, killedAt, next.batch.at);
        context.log(`  killed ${holder.workerQueue}:\n${lines.join('\n')}`);
      }
      log(
        `trial ${trial + 1}: ${next.batch.at - killedAt} ms ` +
          `(history ${historyEventsAtKill} events, ${killedWorkflowWorker ? `workflow worker killed too, replayed in ${replayMs} ms` : 'workflow ran on the other worker'})` +
          (waitedFor.length > 0
            ? ` (timeouts: ${waitedFor.map((t) => `${t.what} ${t.timeoutType} at +${t.atMs} ms`).join(', ')})`
            : ''),
      );
      workers.splice(workers.indexOf(holder), 1);
      // Two workers again for the next trial.
      if (trial + 1 < trials) await startWorker();
    }
  } finally {
    // Before the workers stop: a consumer asked to stop needs a worker to end on.
    if (handle) await stopOrTerminate(handle, STOP_TIMEOUT_MS, log);
    await producer.stop();
    await Promise.all(workers.map((worker) => worker.stop()));
    await deleteStream(context.kinesis, streamName);
  }
  const result: FailoverResult = {
    settings: {
      name: settings.name,
      heartbeatTimeoutMs: resolved.heartbeatTimeoutMs,
      workerScheduleToStartTimeoutMs: resolved.workerScheduleToStartTimeoutMs,
      stickyQueueScheduleToStartTimeoutMs:
        settings.stickyQueueScheduleToStartTimeoutMs ?? DEFAULT_STICKY_QUEUE_TIMEOUT_MS,
      workflowTaskTimeout: String(settings.workflowTaskTimeout ?? TEMPORAL_WORKFLOW_TASK_TIMEOUT),
    },
    emulator: context.stack.kinesisEmulator,
    scenario: scenario.name || 'steady load',
    maxBatchesPerRun: scenario.maxBatchesPerRun ?? resolved.maxBatchesPerRun,
    ratePerSec: scenario.rate,
    trials: failoverMs.length,
    failoverMs,
    trialDetails,
    p50Ms: round(median(failoverMs), 0),
    maxMs: round(max(failoverMs), 0),
  };
  log(`p50 ${result.p50Ms} ms, max ${result.maxMs} ms over ${result.trials} trials`);
  return result;
}

export async function measureFailover(context: BenchContext): Promise<FailoverResult[]> {
  const { quick } = context.settings;
  const trials = context.settings.failoverTrials ?? (quick ? 1 : 6);
  const names = context.settings.failoverSets;
  const sets = names
    ? CANDIDATE_SETTINGS.filter((candidate) => names.some((name) => candidate.name.startsWith(name)))
    : [DEFAULT_SETTINGS, WINDOWED_SETTINGS, RELAXED_SETTINGS];
  const results: FailoverResult[] = [];
  for (const settings of sets) {
    results.push(await measureSettings(context, settings, { name: '', trials, rate: RATE }));
  }
  if (names ? names.includes('long-history') : !quick) {
    // Late in a long run: the worker taking over replays ~5000 events first, unless runs are kept short.
    for (const maxBatchesPerRun of [500, 50]) {
      results.push(
        await measureSettings(context, DEFAULT_SETTINGS, {
          name: `after ${LONG_HISTORY_BATCHES} one-record batches, maxBatchesPerRun ${maxBatchesPerRun}`,
          trials: 1,
          rate: 2,
          historyBatches: LONG_HISTORY_BATCHES,
          maxBatchesPerRun,
        }),
      );
    }
  }
  return results;
}

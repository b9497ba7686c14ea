/**
 * 9. Enhanced fan-out vs polling (issue 13). kinesalite has no stream consumers, so this measurement runs a stack of
 * its own: a Temporal dev server (with `--metrics-port`, its namespace only this measurement's), kinesis-local, dynalite
 * and the dev fan-out front (src/dev/fan-out-server.ts). Every consumer, polling or fan-out, reaches Kinesis through
 * that front's endpoint, as `temporal-kcl dev` users do (polling calls are forwarded to kinesis-local, SubscribeToShard
 * is served by the front), so the three retrievals pay the same hop. Three modes: polling `per-batch` (the default),
 * polling `windowed`, fan-out (which runs windowed). One worker process, stream consumers started as users start them.
 *
 * - latency: one one-shard stream, the three applications on it at once, a producer putting 20 records/s with single
 *   PutRecord calls straight to kinesis-local; put → processRecords of every record (the put time is in the data);
 * - throughput: one one-shard stream pre-filled with 1 KiB records; each mode in turn, a new application, reads the
 *   backlog from TRIM_HORIZON, 1,000 records a read (polling `maxRecords`) or a pushed event (the front's
 *   `maxRecordsPerEvent`);
 * - actions: one two-shard stream; each mode in turn (the dev server counts actions per namespace), from LATEST: idle,
 *   then busy at 50 records/s per shard; the dev server's `action` counter over each window, per shard-second.
 *
 * The fan-out figures are this front + kinesis-local, not AWS: the front polls kinesis-local (every 100 ms when the
 * shard has nothing new) and pushes what it gets, and it does not enforce the 2 MiB/s per consumer-shard.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type KinesisClient, PutRecordCommand } from '@aws-sdk/client-kinesis';
import type { WorkflowHandle } from '@temporalio/client';
import { startStreamConsumer } from '../src/client/consumers';
import { type DevStack, startDevStack } from '../src/dev/dev-stack';
import { getFreePort } from '../src/dev/net';
import { defaultTableName, shardConsumerWorkflowId, streamConsumerWorkflowId } from '../src/ids';
import type { ShardConsumerOptions } from '../src/options';
import type { WorkerChild } from './lib/children';
import { type BenchContext, createBenchContext } from './lib/context';
import { type CatchUpFigures, catchUpFigures, type LatencyFigures, latencyFigures, ratio } from './lib/fan-out-figures';
import {
  type BenchShard,
  createStream,
  deleteStream,
  prefill,
  RateProducer,
  timedData,
  uniqueName,
} from './lib/kinesis';
import { counterDelta, scrapeActions } from './lib/prometheus';
import type { BatchReport } from './lib/protocol';
import { round } from './lib/stats';

export const FAN_OUT_MODES = ['polling per-batch', 'polling windowed', 'fan-out'] as const;
export type FanOutMode = (typeof FAN_OUT_MODES)[number];

const MODE_OPTIONS: Record<FanOutMode, ShardConsumerOptions> = {
  'polling per-batch': {},
  'polling windowed': { execution: 'windowed' },
  'fan-out': { retrieval: 'fan-out' },
};

const LATENCY_RATE = 20;
const LATENCY_RECORD_BYTES = 100;
const THROUGHPUT_RECORD_BYTES = 1_024;
/**
 * Records per read (polling `maxRecords`) and per pushed event (the front's `maxRecordsPerEvent`) in the throughput
 * case: the same cap on both sides, so a backlog takes several batches and the rate after the first is measured.
 */
const THROUGHPUT_MAX_RECORDS = 1_000;
const ACTIONS_SHARDS = 2;
const BUSY_RATE = 50;
const ACTIONS_RECORD_BYTES = 256;
/** Seconds after its start an idle consumer reads once per maxIdleWaitMs (30 s window + 2 + 4 + 8 + 16 s of waits). */
const STEADY_IDLE_AFTER_SECONDS = 60;

export interface FanOutLatency extends LatencyFigures {
  mode: FanOutMode;
  /** p50 and p99 of this mode over polling per-batch's. */
  p50VsPerBatch: number | null;
  p99VsPerBatch: number | null;
}

export interface FanOutThroughput extends CatchUpFigures {
  mode: FanOutMode;
  /** Steady records/s of this mode over polling per-batch's. */
  steadyVsPerBatch: number | null;
}

export interface FanOutActions {
  mode: FanOutMode;
  kind: 'idle' | 'busy';
  shards: number;
  ratePerShard: number;
  warmUpSeconds: number;
  windowSeconds: number;
  actions: number;
  actionsPerShardSecond: number;
  actionsPerShardSecondByType: Record<string, number>;
  deliveredPerSecPerShard: number;
  /** Delivered ≥ 90% of what was produced in the window. */
  keepsUp: boolean;
  /** This mode's actions per shard-second over polling per-batch's (same kind). */
  vsPerBatch: number | null;
}

export interface FanOutResult {
  stack: string;
  latency: { ratePerSec: number; recordBytes: number; seconds: number; modes: FanOutLatency[] };
  throughput: { recordBytes: number; records: number; maxRecords: number; modes: FanOutThroughput[] };
  actions: { steadyIdle: boolean; cases: FanOutActions[] };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A stream consumer of one mode, and the batches the worker reported for it. */
interface Consumer {
  mode: FanOutMode;
  applicationName: string;
  streamName: string;
  shardIds: string[];
  handle: WorkflowHandle;
  batches: BatchReport[];
  startedAt: number;
  stopListening(): void;
}

async function startConsumer(
  context: BenchContext,
  worker: WorkerChild,
  taskQueue: string,
  streamName: string,
  shards: BenchShard[],
  mode: FanOutMode,
  initialPosition: 'TRIM_HORIZON' | 'LATEST',
  died: Promise<never>,
  extraOptions: ShardConsumerOptions = {},
): Promise<Consumer> {
  const applicationName = uniqueName(`app-${mode.replace(/\W+/g, '-')}`);
  await context.createLeaseTable(defaultTableName(applicationName));
  const initialized = new Set<string>();
  const batches: BatchReport[] = [];
  const stopListening = worker.onMessage((message) => {
    if (message.type === 'initialize' && message.applicationName === applicationName) initialized.add(message.shardId);
    if (message.type === 'batch' && message.applicationName === applicationName && message.records > 0) {
      batches.push(message);
    }
  });
  const startedAt = Date.now();
  const handle = await startStreamConsumer(context.client, {
    applicationName,
    streamName,
    processor: 'bench',
    taskQueue,
    shardOptions: { initialPosition, ...MODE_OPTIONS[mode], ...extraOptions },
  });
  const consumer: Consumer = {
    mode,
    applicationName,
    streamName,
    shardIds: shards.map((shard) => shard.shardId),
    handle,
    batches,
    startedAt,
    stopListening,
  };
  const deadline = Date.now() + 120_000;
  while (initialized.size < shards.length) {
    if (Date.now() > deadline) {
      await endConsumer(context, consumer);
      throw new Error(`${mode}: ${initialized.size} of ${shards.length} shard processors initialized within 120 s`);
    }
    await Promise.race([sleep(50), died]);
  }
  return consumer;
}

/**
 * Ends a consumer once its figures are taken: terminates the stream consumer and its shard consumers (a window on the
 * worker ends at its next heartbeat, which finds its workflow gone). Not a stop: a stop of a `windowed` or fan-out
 * consumer took 30–35 s here (per-batch: under 1 s), which would double the section's run time; the streams are deleted
 * afterwards, so nothing (leases, the registered fan-out consumer) outlives the measurement that matters.
 */
async function endConsumer(context: BenchContext, consumer: Consumer): Promise<void> {
  consumer.stopListening();
  const ids = [
    streamConsumerWorkflowId(consumer.applicationName, consumer.streamName),
    ...consumer.shardIds.map((shardId) =>
      shardConsumerWorkflowId(consumer.applicationName, consumer.streamName, shardId),
    ),
  ];
  await Promise.all(
    ids.map((id) =>
      context.client.workflow
        .getHandle(id)
        .terminate('benchmark: figures taken')
        .catch(() => undefined),
    ),
  );
}

async function untilRecords(
  what: string,
  consumer: Consumer,
  records: number,
  timeoutMs: number,
  died: Promise<never>,
) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const got = consumer.batches.reduce((sum, batch) => sum + batch.records, 0);
    if (got >= records) return;
    if (Date.now() > deadline) throw new Error(`${what}: ${got} of ${records} records within ${timeoutMs} ms`);
    await Promise.race([sleep(20), died]);
  }
}

async function measureLatency(
  context: BenchContext,
  kinesis: KinesisClient,
  worker: WorkerChild,
  taskQueue: string,
  seconds: number,
  died: Promise<never>,
): Promise<FanOutResult['latency']> {
  const { streamName, shards } = await createStream(kinesis, 1, 'bench-fan-out-latency');
  const consumers: Consumer[] = [];
  try {
    for (const mode of FAN_OUT_MODES) {
      consumers.push(await startConsumer(context, worker, taskQueue, streamName, shards, mode, 'TRIM_HORIZON', died));
    }
    let sent = 0;
    const put = async () => {
      const key = `k${sent++}`;
      await kinesis.send(
        new PutRecordCommand({ StreamName: streamName, PartitionKey: key, Data: timedData(LATENCY_RECORD_BYTES) }),
      );
    };
    // Warm-up: every consumer is at the tip and its path has run a few times.
    for (let i = 0; i < LATENCY_RATE; i++) {
      await put();
      await sleep(1_000 / LATENCY_RATE);
    }
    for (const consumer of consumers)
      await untilRecords(`latency warm-up ${consumer.mode}`, consumer, sent, 60_000, died);
    const before = consumers.map((consumer) => consumer.batches.length);
    const count = Math.round(seconds * LATENCY_RATE);
    const start = Date.now();
    for (let i = 0; i < count; i++) {
      const wait = start + (i * 1_000) / LATENCY_RATE - Date.now();
      if (wait > 0) await sleep(wait);
      await put();
    }
    for (const consumer of consumers) await untilRecords(`latency ${consumer.mode}`, consumer, sent, 60_000, died);
    const modes = consumers.map((consumer, i) => {
      const lags = consumer.batches.slice(before[i]).flatMap((batch) => batch.lagsMs ?? []);
      if (lags.length !== count) throw new Error(`latency ${consumer.mode}: ${lags.length} lags, expected ${count}`);
      return { mode: consumer.mode, ...latencyFigures(lags) };
    });
    const base = modes.find((m) => m.mode === 'polling per-batch');
    const result = modes.map((m): FanOutLatency => ({
      ...m,
      p50VsPerBatch: ratio(m.p50Ms, base?.p50Ms),
      p99VsPerBatch: ratio(m.p99Ms, base?.p99Ms),
    }));
    for (const m of result) {
      context.log(
        `  latency ${m.mode}: ${m.samples} records at ${LATENCY_RATE}/s: p50 ${m.p50Ms} ms, p90 ${m.p90Ms} ms, p99 ${m.p99Ms} ms, max ${m.maxMs} ms`,
      );
    }
    return { ratePerSec: LATENCY_RATE, recordBytes: LATENCY_RECORD_BYTES, seconds, modes: result };
  } finally {
    await Promise.all(consumers.map((consumer) => endConsumer(context, consumer)));
    await deleteStream(kinesis, streamName);
  }
}

async function measureThroughput(
  context: BenchContext,
  kinesis: KinesisClient,
  worker: WorkerChild,
  taskQueue: string,
  records: number,
  died: Promise<never>,
): Promise<FanOutResult['throughput']> {
  const { streamName, shards } = await createStream(kinesis, 1, 'bench-fan-out-throughput');
  try {
    const filled = Date.now();
    await prefill(kinesis, streamName, { kind: 'plain', recordBytes: THROUGHPUT_RECORD_BYTES }, records);
    context.log(`  throughput: ${records} × ${THROUGHPUT_RECORD_BYTES} B put in ${Date.now() - filled} ms`);
    const modes: (CatchUpFigures & { mode: FanOutMode })[] = [];
    for (const mode of FAN_OUT_MODES) {
      const consumer = await startConsumer(
        context,
        worker,
        taskQueue,
        streamName,
        shards,
        mode,
        'TRIM_HORIZON',
        died,
        mode === 'fan-out' ? {} : { maxRecords: THROUGHPUT_MAX_RECORDS },
      );
      try {
        await untilRecords(`throughput ${mode}`, consumer, records, 300_000, died);
        const figures = catchUpFigures(consumer.startedAt, consumer.batches);
        modes.push({ mode, ...figures });
        context.log(
          `  throughput ${mode}: ${figures.records} records in ${figures.batches} batches, ${figures.elapsedMs} ms from the start request ` +
            `(first batch ${figures.firstBatchMs} ms): ${figures.recordsPerSec} rec/s, ${figures.kibPerSec} KiB/s; after the first batch ` +
            `${figures.steadyRecordsPerSec ?? '-'} rec/s, ${figures.steadyKibPerSec ?? '-'} KiB/s`,
        );
      } finally {
        await endConsumer(context, consumer);
      }
    }
    const base = modes.find((m) => m.mode === 'polling per-batch');
    return {
      recordBytes: THROUGHPUT_RECORD_BYTES,
      records,
      maxRecords: THROUGHPUT_MAX_RECORDS,
      modes: modes.map((m) => ({ ...m, steadyVsPerBatch: ratio(m.steadyRecordsPerSec, base?.steadyRecordsPerSec) })),
    };
  } finally {
    await deleteStream(kinesis, streamName);
  }
}

interface Windows {
  idleWarmUp: number;
  idle: number;
  busyWarmUp: number;
  busy: number;
}

async function actionsWindow(
  context: BenchContext,
  consumer: Consumer,
  kind: FanOutActions['kind'],
  producer: RateProducer | undefined,
  warmUpSeconds: number,
  windowSeconds: number,
  died: Promise<never>,
): Promise<Omit<FanOutActions, 'vsPerBatch'>> {
  const { metricsUrl, namespace } = context.stack.temporal;
  await Promise.race([sleep(warmUpSeconds * 1_000), died]);
  const producedBefore = producer?.produced ?? 0;
  const before = await scrapeActions(metricsUrl!, namespace);
  const from = Date.now();
  await Promise.race([sleep(windowSeconds * 1_000), died]);
  const after = await scrapeActions(metricsUrl!, namespace);
  const to = Date.now();
  const produced = (producer?.produced ?? 0) - producedBefore;
  const shardSeconds = (ACTIONS_SHARDS * (to - from)) / 1_000;
  const byType = counterDelta(before, after);
  const actions = Object.values(byType).reduce((sum, value) => sum + value, 0);
  const delivered = consumer.batches
    .filter((batch) => batch.at >= from && batch.at <= to)
    .reduce((sum, batch) => sum + batch.records, 0);
  const actionsPerShardSecondByType: Record<string, number> = {};
  for (const [type, value] of Object.entries(byType).sort((a, b) => b[1] - a[1])) {
    actionsPerShardSecondByType[type] = round(value / shardSeconds, 4);
  }
  const result = {
    mode: consumer.mode,
    kind,
    shards: ACTIONS_SHARDS,
    ratePerShard: kind === 'busy' ? BUSY_RATE : 0,
    warmUpSeconds,
    windowSeconds: round((to - from) / 1_000, 1),
    actions,
    actionsPerShardSecond: round(actions / shardSeconds, 4),
    actionsPerShardSecondByType,
    deliveredPerSecPerShard: round(delivered / shardSeconds, 1),
    keepsUp: delivered >= 0.9 * produced,
  };
  const types = Object.entries(actionsPerShardSecondByType)
    .map(([type, value]) => `${type} ${value}`)
    .join(', ');
  context.log(
    `  actions ${consumer.mode} ${kind}: ${actions} in ${result.windowSeconds} s = ${result.actionsPerShardSecond} per shard-second ` +
      `[${types}]; delivered ${result.deliveredPerSecPerShard} rec/s per shard${result.keepsUp ? '' : ' (DID NOT keep up)'}`,
  );
  return result;
}

async function measureActions(
  context: BenchContext,
  kinesis: KinesisClient,
  worker: WorkerChild,
  taskQueue: string,
  windows: Windows,
  died: Promise<never>,
): Promise<FanOutActions[]> {
  const { streamName, shards } = await createStream(kinesis, ACTIONS_SHARDS, 'bench-fan-out-actions');
  const cases: Omit<FanOutActions, 'vsPerBatch'>[] = [];
  try {
    for (const mode of FAN_OUT_MODES) {
      const consumer = await startConsumer(context, worker, taskQueue, streamName, shards, mode, 'LATEST', died);
      let producer: RateProducer | undefined;
      try {
        cases.push(await actionsWindow(context, consumer, 'idle', undefined, windows.idleWarmUp, windows.idle, died));
        producer = busyProducer(kinesis, streamName, shards);
        producer.start();
        cases.push(await actionsWindow(context, consumer, 'busy', producer, windows.busyWarmUp, windows.busy, died));
      } finally {
        await producer?.stop();
        await endConsumer(context, consumer);
      }
    }
  } finally {
    await deleteStream(kinesis, streamName);
  }
  return cases.map((c) => ({
    ...c,
    vsPerBatch: ratio(
      c.actionsPerShardSecond,
      cases.find((base) => base.mode === 'polling per-batch' && base.kind === c.kind)?.actionsPerShardSecond,
    ),
  }));
}

function busyProducer(kinesis: KinesisClient, streamName: string, shards: BenchShard[]): RateProducer {
  return new RateProducer(kinesis, streamName, shards, BUSY_RATE, ACTIONS_RECORD_BYTES, 100);
}

export async function measureFanOut(benchContext: BenchContext): Promise<FanOutResult> {
  const { quick } = benchContext.settings;
  const log = (line: string) => benchContext.log(line);
  const logDir = join(benchContext.logDir, 'fan-out-stack');
  mkdirSync(logDir, { recursive: true });
  let stack: DevStack | undefined;
  let context: BenchContext | undefined;
  let worker: WorkerChild | undefined;
  try {
    stack = await startDevStack({
      temporal: { headless: true, metricsPort: await getFreePort() },
      kinesis: { emulator: 'kinesis-local', fanOut: { maxRecordsPerEvent: THROUGHPUT_MAX_RECORDS } },
      logDir,
      log: (line) => log(`  [fan-out stack] ${line}`),
    });
    const endpoint = stack.kinesisFanOutEndpoint;
    if (!endpoint) throw new Error('the kinesis-local stack has no fan-out front');
    context = await createBenchContext(stack, benchContext.settings, log);
    const taskQueue = uniqueName('bench-fan-out');
    worker = await context.startWorker({
      name: 'fan-out',
      processorMode: 'latency',
      taskQueue,
      kinesisEndpoint: endpoint,
    });
    const running = worker;
    const died = worker.exited.then((how): never => {
      throw new Error(`worker exited (${String(how)})\n${running.stderr}`);
    });
    died.catch(() => undefined);
    // Producers put straight to kinesis-local; consumers read through the front.
    const kinesis = context.kinesis;
    const latency = await measureLatency(context, kinesis, worker, taskQueue, quick ? 10 : 30, died);
    const throughput = await measureThroughput(context, kinesis, worker, taskQueue, quick ? 6_000 : 10_000, died);
    // A quiet shard waits 2 s, 4 s, ... up to maxIdleWaitMs (30 s) between reads, and a windowed one (fan-out too) only
    // after its first window has had 30 s without records: idle is steady about 60 s after the start. The quick run's
    // idle window comes before that (flagged in the report).
    const windows: Windows = quick
      ? { idleWarmUp: 5, idle: 10, busyWarmUp: 5, busy: 10 }
      : { idleWarmUp: STEADY_IDLE_AFTER_SECONDS + 5, idle: 30, busyWarmUp: 10, busy: 20 };
    const cases = await measureActions(context, kinesis, worker, taskQueue, windows, died);
    return {
      stack: `Temporal dev server of its own (--metrics-port), kinesis-local ${stack.kinesisEndpoint}, the dev fan-out front ${endpoint} in front of it (every consumer reads through it), dynalite`,
      latency,
      throughput,
      actions: { steadyIdle: windows.idleWarmUp >= STEADY_IDLE_AFTER_SECONDS, cases },
    };
  } finally {
    await worker?.stop();
    await context?.close().catch(() => undefined);
    await stack?.stop().catch((error: unknown) => log(`  fan-out: stopping its stack: ${String(error)}`));
  }
}

/**
 * 2. Scale: 1, 4, 16 and 64 shards on ONE worker process (a child process, so its CPU seconds and peak RSS can be read
 * from /proc), consumed through the stream consumer with default options while a producer puts 100 records/s on every
 * shard. Does it keep up (every record delivered, within a few seconds of the end of production)?
 */
import { startStreamConsumer } from '../src/client/consumers';
import { defaultTableName, streamConsumerWorkflowId } from '../src/ids';
import type { KinesisClient } from '@aws-sdk/client-kinesis';
import { createKinesisClient } from '../src/aws/clients';
import { childPidsNamed, cpuSeconds, EmulatorChild } from './lib/children';
import type { BenchContext } from './lib/context';
import { createStream, deleteStream, RateProducer, uniqueName } from './lib/kinesis';
import type { BatchReport } from './lib/protocol';
import { STOP_TIMEOUT_MS, stopOrTerminate } from './lib/shard-run';
import { max, MIB, round } from './lib/stats';

const RATE_PER_SHARD = 100;
const RECORD_BYTES = 1024;
/** Every record delivered at most this long after production stopped. */
const KEEP_UP_DRAIN_MS = 5_000;

export interface ScalePoint {
  shards: number;
  emulator: string;
  targetRatePerShard: number;
  recordBytes: number;
  productionSeconds: number;
  /** Records per second the producer achieved, all shards together. */
  producedPerSec: number;
  produced: number;
  delivered: number;
  /** Delivered records ÷ (production start → last delivery); NaN if nothing was delivered. */
  recordsPerSec: number;
  mibPerSec: number;
  /**
   * Worker CPU seconds from production start until every record was delivered (or the wait for them gave up), and as a
   * share of one core over that time; the other processes' shares below cover the same time.
   */
  workerCpuSeconds: number;
  workerCpuPercentOfOneCore: number;
  /** Peak resident set size of the worker process since it started (VmHWM). */
  workerPeakRssMiB: number;
  /** CPU of the emulator process, and of the benchmark process (producer, dynalite), as a share of one core. */
  emulatorCpuPercentOfOneCore: number;
  /** CPU of the Temporal dev server as a share of one core. */
  temporalCpuPercentOfOneCore: number;
  benchCpuPercentOfOneCore: number;
  /** The producer reached less than 90% of the target rate: the emulator (or the machine) is the limit, not the worker. */
  producerLimited: boolean;
  /** Stream consumer start → every shard's processor initialized. */
  startupMs: number;
  /** put → processRecords. */
  lagMeanMs: number;
  lagMaxMs: number;
  lagMaxFirstHalfMs: number;
  lagMaxSecondHalfMs: number;
  /** End of production → last record delivered; NaN if nothing was delivered. */
  drainMs: number;
  keepsUp: boolean;
}

async function until(
  what: string,
  predicate: () => boolean,
  timeoutMs: number,
  died?: Promise<unknown>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let failed: Error | undefined;
  died?.catch((error: unknown) => (failed = error instanceof Error ? error : new Error(String(error))));
  while (!predicate()) {
    if (failed) throw failed;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface Emulator {
  child: EmulatorChild;
  kinesis: KinesisClient;
}

async function measurePoint(
  context: BenchContext,
  emulator: Emulator,
  shardCount: number,
  productionSeconds: number,
): Promise<ScalePoint> {
  const taskQueue = uniqueName('bench-scale');
  const { kinesis } = emulator;
  const worker = await context.startWorker({
    name: `scale-${shardCount}`,
    processorMode: 'lag',
    taskQueue,
    kinesisEndpoint: emulator.child.endpoint,
  });
  const died = worker.exited.then((how) => {
    throw new Error(`worker exited (${String(how)})\n${worker.stderr}`);
  });
  died.catch(() => undefined);
  const { streamName, shards } = await createStream(kinesis, shardCount, `bench-scale-${shardCount}`);
  const applicationName = uniqueName('app-scale');
  await context.createLeaseTable(defaultTableName(applicationName));
  const initialized = new Set<string>();
  const batches: BatchReport[] = [];
  let delivered = 0;
  worker.onMessage((message) => {
    if (message.type === 'initialize' && message.applicationName === applicationName) initialized.add(message.shardId);
    if (message.type === 'batch' && message.applicationName === applicationName && message.records > 0) {
      batches.push(message);
      delivered += message.records;
    }
  });
  const producer = new RateProducer(kinesis, streamName, shards, RATE_PER_SHARD, RECORD_BYTES);
  try {
    const startedAt = Date.now();
    await startStreamConsumer(context.client, {
      applicationName,
      streamName,
      processor: 'bench',
      taskQueue,
      shardOptions: { initialPosition: 'TRIM_HORIZON' },
    });
    await until(`${shardCount} shard processors initialized`, () => initialized.size === shardCount, 180_000, died);
    const startupMs = Date.now() - startedAt;
    // Let every consumer reach its idle loop at the (empty) tip before production starts.
    await new Promise((r) => setTimeout(r, 2_000));

    const cpuBefore = worker.cpuSeconds();
    const emulatorCpuBefore = emulator.child.cpuSeconds();
    const benchCpuBefore = process.cpuUsage();
    const temporalPid = childPidsNamed('temporal')[0];
    const temporalCpuBefore = temporalPid ? cpuSeconds(temporalPid) : Number.NaN;
    producer.start();
    await new Promise((r) => setTimeout(r, productionSeconds * 1_000));
    await producer.stop();
    const productionEnd = producer.stoppedAt;
    await until(
      `${producer.produced} records delivered`,
      () => delivered >= producer.produced,
      60_000 + productionSeconds * 1_000,
      died,
    ).catch((error: unknown) => context.log(`  ${shardCount} shards: ${String(error)}`));
    const cpu = worker.cpuSeconds() - cpuBefore;
    const emulatorCpu = emulator.child.cpuSeconds() - emulatorCpuBefore;
    const benchCpu = process.cpuUsage(benchCpuBefore);
    const temporalCpu = temporalPid ? cpuSeconds(temporalPid) - temporalCpuBefore : Number.NaN;
    const sampledAt = Date.now();
    const peakRss = worker.peakRssMiB();
    // NaN without batches.
    const lastDelivery = max(batches.map((batch) => batch.at));
    const windowSeconds = (lastDelivery - producer.startedAt) / 1000;
    const cpuWindowSeconds = (sampledAt - producer.startedAt) / 1000;
    const middle = (producer.startedAt + productionEnd) / 2;
    const lagMax = (list: BatchReport[]) => Math.max(0, ...list.map((batch) => batch.lagMaxMs ?? 0));
    const drainMs = lastDelivery - productionEnd;
    const point: ScalePoint = {
      shards: shardCount,
      emulator: 'kinesalite (own process)',
      targetRatePerShard: RATE_PER_SHARD,
      recordBytes: RECORD_BYTES,
      productionSeconds,
      producedPerSec: round(producer.achievedRate, 0),
      produced: producer.produced,
      delivered,
      recordsPerSec: round(delivered / windowSeconds, 0),
      mibPerSec: round((delivered * RECORD_BYTES) / MIB / windowSeconds, 2),
      workerCpuSeconds: round(cpu, 2),
      workerCpuPercentOfOneCore: round((100 * cpu) / cpuWindowSeconds, 0),
      workerPeakRssMiB: round(peakRss, 0),
      emulatorCpuPercentOfOneCore: round((100 * emulatorCpu) / cpuWindowSeconds, 0),
      temporalCpuPercentOfOneCore: round((100 * temporalCpu) / cpuWindowSeconds, 0),
      benchCpuPercentOfOneCore: round((benchCpu.user + benchCpu.system) / 10_000 / cpuWindowSeconds, 0),
      producerLimited: producer.achievedRate < 0.9 * RATE_PER_SHARD * shardCount,
      startupMs,
      lagMeanMs: round(batches.reduce((sum, batch) => sum + (batch.lagSumMs ?? 0), 0) / Math.max(1, delivered), 0),
      lagMaxMs: lagMax(batches),
      lagMaxFirstHalfMs: lagMax(batches.filter((batch) => batch.at < middle)),
      lagMaxSecondHalfMs: lagMax(batches.filter((batch) => batch.at >= middle)),
      drainMs,
      keepsUp: delivered === producer.produced && drainMs <= KEEP_UP_DRAIN_MS,
    };
    context.log(
      `  ${shardCount} shards: produced ${point.producedPerSec} rec/s, delivered ${delivered}/${producer.produced} ` +
        `(${point.recordsPerSec} rec/s, ${point.mibPerSec} MiB/s); lag mean ${point.lagMeanMs} ms max ${point.lagMaxMs} ms; ` +
        `drain ${drainMs} ms; worker ${point.workerCpuSeconds} CPU s (${point.workerCpuPercentOfOneCore}% of a core), ` +
        `peak RSS ${point.workerPeakRssMiB} MiB; emulator ${point.emulatorCpuPercentOfOneCore}%, ` +
        `Temporal server ${point.temporalCpuPercentOfOneCore}%, benchmark ${point.benchCpuPercentOfOneCore}% of a core; ` +
        `${point.keepsUp ? 'keeps up' : 'DOES NOT keep up'}${point.producerLimited ? ' (producer-limited: the emulator cannot take the target rate)' : ''}`,
    );
    return point;
  } finally {
    await producer.stop();
    await stopOrTerminate(
      context.client.workflow.getHandle(streamConsumerWorkflowId(applicationName, streamName)),
      STOP_TIMEOUT_MS,
      (line) => context.log(`  ${shardCount} shards: stopping: ${line}`),
    );
    await worker.stop();
    await deleteStream(kinesis, streamName);
  }
}

export async function measureScale(context: BenchContext): Promise<ScalePoint[]> {
  const { quick } = context.settings;
  const points = context.settings.scalePoints ?? (quick ? [1, 8] : [1, 4, 16, 64]);
  const productionSeconds = quick ? 5 : 30;
  const child = await EmulatorChild.start(context.logDir);
  const kinesis = createKinesisClient({ ...context.stack.aws, kinesisEndpoint: child.endpoint });
  try {
    const results: ScalePoint[] = [];
    for (const shards of points) {
      results.push(await measurePoint(context, { child, kinesis }, shards, productionSeconds));
    }
    return results;
  } finally {
    kinesis.destroy();
    await child.stop();
  }
}

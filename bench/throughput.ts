/**
 * 1. Throughput per shard: temporal-kcl (getRecords → de-aggregate → no-op processor → checkpoint every batch; one
 * shard; prefetch on, and off for comparison) against a raw AWS-SDK GetRecords + deaggregateRecords loop, on the same
 * pre-filled stream of the same emulator, interleaved in the same run.
 */
import { RawReaderChild, type WorkerChild } from './lib/children';
import type { BenchContext } from './lib/context';
import { createStream, deleteStream, kinesisRecordBytes, type Payload, prefill, uniqueName } from './lib/kinesis';
import { runShardConsumer, type ShardRunResult } from './lib/shard-run';
import { MIB, round } from './lib/stats';

/** Real Kinesis returns at most 10 MiB per GetRecords; kinesalite has no such cap, so `Limit` stands in for it. */
const GET_RECORDS_BYTES = 10 * MIB;
/** Real Kinesis' read quota per shard (shared by all consumers that do not use enhanced fan-out). */
const KINESIS_SHARD_READ_MIB_PER_SEC = 2;

interface ThroughputCase {
  name: string;
  payload: Payload;
  kinesisRecords: { full: number; quick: number };
}

const CASES: ThroughputCase[] = [
  {
    name: '100 B records',
    payload: { kind: 'plain', recordBytes: 100 },
    kinesisRecords: { full: 200_000, quick: 25_000 },
  },
  {
    name: '1 KB records',
    payload: { kind: 'plain', recordBytes: 1024 },
    kinesisRecords: { full: 60_000, quick: 12_000 },
  },
  {
    name: '10 KB records',
    payload: { kind: 'plain', recordBytes: 10_240 },
    kinesisRecords: { full: 10_000, quick: 2_000 },
  },
  {
    name: 'KPL aggregates (100 × 100 B)',
    payload: { kind: 'kpl', userRecordBytes: 100, userRecordsPerAggregate: 100 },
    // As much data as the 10 KB case (about 100 MiB, 11 batches): long enough for a steady state, not just start-up.
    kinesisRecords: { full: 10_000, quick: 1_000 },
  },
  {
    name: 'KPL aggregates (100 × 100 B), shard of half the key space',
    payload: { kind: 'kpl', userRecordBytes: 100, userRecordsPerAggregate: 100, lowerHalf: true },
    kinesisRecords: { full: 10_000, quick: 1_000 },
  },
];

export interface RateFigures {
  elapsedMs: number;
  recordsPerSec: number;
  mibPerSec: number;
  /** Records per second after the first batch (start-up excluded); NaN with a single batch. */
  steadyRecordsPerSec: number;
  /** Start → the first batch read (raw) or delivered (temporal-kcl). */
  firstBatchMs: number;
  /** CPU seconds of the reading process (the raw loop's, or the temporal-kcl worker's) per MiB read. */
  cpuSecondsPerMiB: number;
}

export interface VariantFigures {
  /** Every repetition, in run order. */
  runs: RateFigures[];
  /** The fastest repetition (the machine is shared: interference only ever slows a run down). */
  best: RateFigures;
}

export interface KclVariantFigures extends VariantFigures {
  /** Start request → first batch delivered, in the fastest repetition (start-up: lease, initialize, iterator). */
  firstBatchMs: number;
  batches: number;
}

export interface ThroughputResult {
  name: string;
  emulator: string;
  payload: Payload;
  kinesisRecords: number;
  kinesisRecordBytes: number;
  userRecords: number;
  userBytes: number;
  /** GetRecords Limit used by both readers. */
  maxRecords: number;
  repetitions: number;
  raw: VariantFigures;
  prefetchOn: KclVariantFigures;
  prefetchOff: KclVariantFigures;
  /** temporal-kcl (prefetch on) ÷ raw loop, records/s of the fastest repetitions. */
  throughputRatio: number;
  throughputRatioPrefetchOff: number;
  /** The same after the first batch (start-up excluded: what a long-running consumer sees); NaN with one batch. */
  steadyStateRatio: number;
  steadyStateRatioPrefetchOff: number;
  /** temporal-kcl with prefetch reads at least Kinesis' 2 MiB/s per shard read quota. */
  keepsUpWithKinesisShard: boolean;
  /**
   * On a shard of part of the key space: the raw loop doing the same hash-key range check temporal-kcl (and Java KCL)
   * make on every user record of an aggregate, and temporal-kcl ÷ that loop (the consumer's own overhead).
   */
  rawWithRangeCheck?: VariantFigures;
  throughputRatioVsRangeCheckedRaw?: number;
}

function rate(
  run: { elapsedMs: number; records: number; bytes: number; firstBatchMs: number; firstBatchRecords: number },
  cpuSeconds: number,
): RateFigures {
  const { elapsedMs, records, bytes, firstBatchMs, firstBatchRecords } = run;
  const seconds = elapsedMs / 1000;
  const steadySeconds = (elapsedMs - firstBatchMs) / 1000;
  return {
    elapsedMs,
    firstBatchMs,
    recordsPerSec: round(records / seconds, 0),
    mibPerSec: round(bytes / MIB / seconds, 2),
    steadyRecordsPerSec:
      records > firstBatchRecords && steadySeconds > 0
        ? round((records - firstBatchRecords) / steadySeconds, 0)
        : Number.NaN,
    cpuSecondsPerMiB: round(cpuSeconds / (bytes / MIB), 4),
  };
}

/** The best steady-state rate of the repetitions (NaN if none has more than one batch). */
function bestSteady(runs: RateFigures[]): number {
  const rates = runs.map((run) => run.steadyRecordsPerSec).filter((value) => Number.isFinite(value));
  return rates.length > 0 ? Math.max(...rates) : Number.NaN;
}

function best(runs: RateFigures[]): RateFigures {
  return runs.reduce((a, b) => (b.recordsPerSec > a.recordsPerSec ? b : a));
}

export async function measureThroughput(context: BenchContext): Promise<ThroughputResult[]> {
  const { quick } = context.settings;
  const repetitions = context.settings.repetitions ?? (quick ? 1 : 3);
  const taskQueue = uniqueName('bench-throughput');
  const raw = await RawReaderChild.start(context.endpoints, context.logDir);
  let worker: WorkerChild | undefined;
  try {
    worker = await context.startWorker({ name: 'throughput-worker', processorMode: 'count', taskQueue });
    const kcl = worker;

    // Warm-up: both readers' processes JIT-compile their paths before anything is timed.
    {
      const { streamName, shards } = await createStream(context.kinesis, 1, 'bench-warmup');
      const { userRecords } = await prefill(context.kinesis, streamName, { kind: 'plain', recordBytes: 100 }, 5_000);
      await raw.read({ streamName, shardId: shards[0]!.shardId, expectedRecords: userRecords, limit: 1_000 });
      await runShardConsumer(context, {
        worker: kcl,
        taskQueue,
        streamName,
        shard: shards[0]!,
        expectedRecords: userRecords,
        options: { initialPosition: 'TRIM_HORIZON', maxRecords: 1_000 },
      });
      await deleteStream(context.kinesis, streamName);
    }

    const results: ThroughputResult[] = [];
    for (const testCase of CASES.filter((c) => !context.settings.cases || context.settings.cases.test(c.name))) {
      const kinesisRecords = quick ? testCase.kinesisRecords.quick : testCase.kinesisRecords.full;
      const recordBytes = kinesisRecordBytes(testCase.payload);
      const maxRecords = Math.min(10_000, Math.floor(GET_RECORDS_BYTES / recordBytes));
      const shardCount = testCase.payload.kind === 'kpl' && testCase.payload.lowerHalf ? 2 : 1;
      const { streamName, shards } = await createStream(context.kinesis, shardCount, 'bench-throughput');
      const shard = shards[0]!;
      const filledAt = Date.now();
      const { userRecords, userBytes } = await prefill(context.kinesis, streamName, testCase.payload, kinesisRecords);
      context.log(
        `  ${testCase.name}: ${kinesisRecords} Kinesis records (${userRecords} user records, ${round(userBytes / MIB, 1)} MiB) pre-filled in ${Date.now() - filledAt} ms; maxRecords ${maxRecords}`,
      );

      const checksRange = testCase.payload.kind === 'kpl' && testCase.payload.lowerHalf;
      const runs = {
        rawChecked: [] as RateFigures[],
        raw: [] as RateFigures[],
        on: [] as (RateFigures & ShardRunResult)[],
        off: [] as (RateFigures & ShardRunResult)[],
      };
      const variants = {
        raw: async () => {
          const result = await raw.read({
            streamName,
            shardId: shard.shardId,
            expectedRecords: userRecords,
            limit: maxRecords,
          });
          if (result.records !== userRecords) throw new Error(`raw reader read ${result.records} of ${userRecords}`);
          runs.raw.push(rate(result, result.cpuMs / 1000));
          if (!checksRange) return;
          const checked = await raw.read({
            streamName,
            shardId: shard.shardId,
            expectedRecords: userRecords,
            limit: maxRecords,
            hashKeyRange: shard.hashKeyRange,
          });
          if (checked.records !== userRecords) throw new Error(`raw reader read ${checked.records} of ${userRecords}`);
          runs.rawChecked.push(rate(checked, checked.cpuMs / 1000));
        },
        on: async () => runs.on.push(await kclRun(true)),
        off: async () => runs.off.push(await kclRun(false)),
      };
      const kclRun = async (prefetch: boolean) => {
        const result = await runShardConsumer(context, {
          worker: kcl,
          taskQueue,
          streamName,
          shard,
          expectedRecords: userRecords,
          // Read pacing (5 reads/s per shard, Kinesis' limit) off: the emulator has no such limit and the raw loop is not
          // paced either, so this compares the consumer's own overhead. With pacing on, reads are capped at
          // 5 × maxRecords records/s per shard, far above what real Kinesis serves a shard (2 MiB/s).
          options: { initialPosition: 'TRIM_HORIZON', maxRecords, prefetch, minTimeBetweenReadsMs: 0 },
        });
        return { ...result, ...rate(result, result.workerCpuSeconds) };
      };
      // Interleaved, in a rotating order, so a burst of load on the shared machine does not hit one variant only.
      const orders: (keyof typeof variants)[][] = [
        ['raw', 'on', 'off'],
        ['on', 'off', 'raw'],
        ['off', 'raw', 'on'],
      ];
      for (let rep = 0; rep < repetitions; rep++) {
        for (const variant of orders[rep % orders.length]!) await variants[variant]();
      }
      await deleteStream(context.kinesis, streamName);

      const kclFigures = (list: (RateFigures & ShardRunResult)[]): KclVariantFigures => {
        const fastest = list.reduce((a, b) => (b.recordsPerSec > a.recordsPerSec ? b : a));
        const strip = (run: RateFigures): RateFigures => ({
          elapsedMs: run.elapsedMs,
          firstBatchMs: run.firstBatchMs,
          recordsPerSec: run.recordsPerSec,
          mibPerSec: run.mibPerSec,
          steadyRecordsPerSec: run.steadyRecordsPerSec,
          cpuSecondsPerMiB: run.cpuSecondsPerMiB,
        });
        return {
          runs: list.map(strip),
          best: strip(fastest),
          firstBatchMs: fastest.firstBatchMs,
          batches: fastest.batches,
        };
      };
      const rawBest = best(runs.raw);
      const on = kclFigures(runs.on);
      const off = kclFigures(runs.off);
      const result: ThroughputResult = {
        name: testCase.name,
        emulator: context.stack.kinesisEmulator,
        payload: testCase.payload,
        kinesisRecords,
        kinesisRecordBytes: recordBytes,
        userRecords,
        userBytes,
        maxRecords,
        repetitions,
        raw: { runs: runs.raw, best: rawBest },
        prefetchOn: on,
        prefetchOff: off,
        throughputRatio: round(on.best.recordsPerSec / rawBest.recordsPerSec, 3),
        throughputRatioPrefetchOff: round(off.best.recordsPerSec / rawBest.recordsPerSec, 3),
        steadyStateRatio: round(bestSteady(on.runs) / bestSteady(runs.raw), 3),
        steadyStateRatioPrefetchOff: round(bestSteady(off.runs) / bestSteady(runs.raw), 3),
        keepsUpWithKinesisShard: on.best.mibPerSec >= KINESIS_SHARD_READ_MIB_PER_SEC,
        ...(runs.rawChecked.length > 0
          ? {
              rawWithRangeCheck: { runs: runs.rawChecked, best: best(runs.rawChecked) },
              throughputRatioVsRangeCheckedRaw: round(on.best.recordsPerSec / best(runs.rawChecked).recordsPerSec, 3),
            }
          : {}),
      };
      context.log(
        `  ${testCase.name}: raw ${rawBest.recordsPerSec} rec/s ${rawBest.mibPerSec} MiB/s; ` +
          `temporal-kcl prefetch on ${on.best.recordsPerSec} rec/s ${on.best.mibPerSec} MiB/s (×${result.throughputRatio}), ` +
          `off ${off.best.recordsPerSec} rec/s (×${result.throughputRatioPrefetchOff}); first batch after ${on.firstBatchMs} ms (raw ${rawBest.firstBatchMs} ms); ` +
          `after the first batch ×${result.steadyStateRatio} (prefetch on), ×${result.steadyStateRatioPrefetchOff} (off)`,
      );
      results.push(result);
    }
    return results;
  } finally {
    await Promise.all([raw.stop(), worker?.stop()]);
  }
}

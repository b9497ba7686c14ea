/**
 * Nothing is lost when AWS misbehaves. A `temporal-kcl worker` child process (the CLI, with a processor module that
 * appends every record to a file) reaches kinesis-local and dynalite only through fault-injecting proxies that answer
 * a share of calls with throttling, LimitExceeded, HTTP 500, a connection reset, a slow answer, or a lost answer (the
 * call took effect, the answer never came); the producer writes to the emulator directly. Every record is delivered, the consumers end normally on stop, the faults are retried with
 * the activities' retry policies (spaced by at least their initial interval, no tight loops), and the worker's
 * Prometheus endpoint shows the retries and the records processed.
 *
 * KEEP_TEST_OUTPUT=1 keeps the worker's output and the records file (the path is printed).
 */
import { testExecution } from '../helpers/execution';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { getStreamProgress, startStreamConsumer, stopStreamConsumer } from '../../src/client/consumers';
import type { ShardConsumerResult } from '../../src/consumer-types';
import { getFreePort } from '../../src/dev/net';
import { shardConsumerWorkflowId } from '../../src/ids';
import type { shardConsumerWorkflow } from '../../src/workflows/shard-consumer';
import { type CliWorker, type MetricSample, scrapeMetrics, startCliWorker } from '../helpers/cli-worker';
import { type FaultKind, type FaultProxy, type ProxyCall, startFaultProxy } from '../helpers/fault-proxy';
import { createStream, kclTestContext, type KclTestContext, listShards } from '../helpers/kcl';
import { putMixedRecords } from '../helpers/mixed-records';
import { uniqueName } from '../helpers/stack';

/** How often a quiet shard is polled. */
const IDLE_MS = 250;
const SHARDS = 3;
/** Kinesis records put; every third is a KPL aggregate of three user records. */
const PUTS = 120;
const FAULT_RATE = 0.2;
const MAX_RECORDS = 3;
const ALL_FAULTS: FaultKind[] = ['throttle', 'limit', 'server-error', 'reset', 'slow', 'lost-answer'];
/**
 * Faults that fail the call (a slow answer succeeds, late): each must be followed by a retry. A lost answer fails the
 * call after it took effect (a checkpoint written, a lease claimed): the retry must cope with its own earlier write.
 */
const FAILING: ReadonlySet<string> = new Set(['throttle', 'limit', 'server-error', 'reset', 'lost-answer']);

/**
 * The least time between a failed call and its retry, from the retry policies in src/workflows/shard-activities.ts and
 * stream-activities.ts: GetRecords (READ_RETRY) 200 ms; lease-item writes 100 ms (CHECKPOINT_RETRY, the quickest that
 * touches an item); GetShardIterator, ListShards and the table calls go through 1 s policies (CONTROL_RETRY, streams).
 */
const RETRY_FLOOR_MS: Record<string, number> = {
  GetRecords: 200,
  GetShardIterator: 1_000,
  ListShards: 1_000,
  DescribeTable: 1_000,
  CreateTable: 1_000,
  BatchGetItem: 1_000,
};
const ITEM_RETRY_FLOOR_MS = 100;
/** Timer slack: a retry may be dispatched a little before its nominal time is measured here. */
const TOLERANCE = 0.9;

interface RetryGap {
  operation: string;
  fault: string;
  gapMs: number;
  floorMs: number;
}

/** The worker's load report to a lease item (src/activities/load-reporter.ts), told apart from checkpoint writes. */
const isLoadReport = (call: ProxyCall): boolean => call.operation === 'UpdateItem' && call.request.includes('temporalKclReportedAt');

/** For every failed call, the time until the same call is made again (same operation on the same shard, or same request). */
function retryGaps(log: ProxyCall[]): { gaps: RetryGap[]; unretried: ProxyCall[] } {
  const gaps: RetryGap[] = [];
  const unretried: ProxyCall[] = [];
  log.forEach((call, i) => {
    if (!call.fault || !FAILING.has(call.fault)) return;
    const again = log
      .slice(i + 1)
      .find(
        (later) =>
          later.operation === call.operation &&
          // A worker's load report (an UpdateItem of its own, every 30 s) is not a retry of a checkpoint write.
          isLoadReport(later) === isLoadReport(call) &&
          (call.shardId !== undefined ? later.shardId === call.shardId : later.request === call.request),
      );
    if (!again) {
      unretried.push(call);
      return;
    }
    const floorMs = RETRY_FLOOR_MS[call.operation] ?? (call.shardId !== undefined ? ITEM_RETRY_FLOOR_MS : 1_000);
    gaps.push({ operation: call.operation, fault: call.fault, gapMs: again.at - call.at, floorMs });
  });
  return { gaps, unretried };
}

function describeFaults(proxy: FaultProxy): string {
  const calls = [...proxy.calls].map(([operation, count]) => `${operation} ${count}`).join(', ');
  const faults = ALL_FAULTS.map((kind) => `${kind} ${proxy.faults[kind]}`).join(', ');
  return `calls {${calls}}; faults {${faults}}`;
}

const sum = (samples: MetricSample[]) => samples.reduce((total, sample) => total + sample.value, 0);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('AWS faults (throttling, LimitExceeded, 500, resets, slow and lost answers) in front of Kinesis and DynamoDB', () => {
  let context: KclTestContext;
  let directory: string;
  before(async () => {
    context = await kclTestContext();
    directory = mkdtempSync(join(tmpdir(), 'kcl-aws-faults-'));
  });
  after(async () => {
    await context.close();
    if (!process.env.KEEP_TEST_OUTPUT) rmSync(directory, { recursive: true, force: true });
    else console.log(`[aws-faults] output kept in ${directory}`);
  });

  test('a CLI worker behind fault proxies delivers every record, retries with backoff, and its metrics show it', async () => {
    // Prepare: a stream of plain records and KPL aggregates, written straight to the emulator.
    const streamName = await createStream(context.kinesis, SHARDS, 'faults');
    const applicationName = uniqueName('app-faults');
    const taskQueue = uniqueName('tq-faults');
    const expected = (await putMixedRecords(context.kinesis, streamName, { puts: PUTS })).map((record) => record.data);
    const shardIds = (await listShards(context.kinesis, streamName)).map((shard) => shard.ShardId ?? '');
    assert.equal(shardIds.length, SHARDS);

    const proxyOptions = { faultRate: FAULT_RATE, kinds: ALL_FAULTS, cycleKinds: true, slowMs: 1_000 };
    const kinesisProxy = await startFaultProxy({ ...proxyOptions, target: context.stack.aws.kinesisEndpoint, seed: 7 });
    const dynamoProxy = await startFaultProxy({
      ...proxyOptions,
      target: context.stack.aws.dynamoDbEndpoint,
      seed: 11,
    });
    const metricsPort = await getFreePort();
    let worker: CliWorker | undefined;
    const started = Date.now();
    try {
      worker = await startCliWorker({
        recordsFile: join(directory, 'records.jsonl'),
        args: ['--metrics-port', String(metricsPort), '--task-queue', taskQueue],
        env: {
          TEMPORAL_ADDRESS: context.stack.temporalAddress,
          TEMPORAL_NAMESPACE: context.stack.namespace,
          AWS_REGION: context.stack.aws.region,
          AWS_ACCESS_KEY_ID: context.stack.aws.credentials.accessKeyId,
          AWS_SECRET_ACCESS_KEY: context.stack.aws.credentials.secretAccessKey,
          KINESIS_ENDPOINT: kinesisProxy.endpoint,
          DYNAMODB_ENDPOINT: dynamoProxy.endpoint,
        },
      });
      const ready = Date.now();

      // Act: consume the stream until every record has arrived, then stop.
      await startStreamConsumer(context.client, {
        applicationName,
        streamName,
        taskQueue,
        shardOptions: { initialPosition: 'TRIM_HORIZON', maxRecords: MAX_RECORDS, idleTimeBetweenReadsMs: IDLE_MS },
      });
      const expectedSet = new Set(expected);
      try {
        await worker.until((lines) => {
          const seen = new Set(lines.flatMap((line) => (line.kind === 'record' ? [line.data] : [])));
          return [...expectedSet].every((data) => seen.has(data));
        }, 120_000);
      } catch (error) {
        const status = await getStreamProgress(context.client, { applicationName, streamName }).catch(String);
        console.log(`[aws-faults] stuck: ${JSON.stringify(status, null, 1)}`);
        console.log(`[aws-faults] kinesis proxy: ${describeFaults(kinesisProxy)}`);
        console.log(`[aws-faults] dynamodb proxy: ${describeFaults(dynamoProxy)}`);
        console.log(
          `[aws-faults] last calls: ${JSON.stringify([...kinesisProxy.log.slice(-10), ...dynamoProxy.log.slice(-10)], null, 1)}`,
        );
        throw error;
      }
      const delivered = Date.now();
      const streamResult = await stopStreamConsumer(context.client, { applicationName, streamName, wait: true });
      const shardResults: ShardConsumerResult[] = await Promise.all(
        shardIds.map((shardId) =>
          context.client.workflow
            .getHandle<typeof shardConsumerWorkflow>(shardConsumerWorkflowId(applicationName, streamName, shardId))
            .result(),
        ),
      );
      const stopped = Date.now();

      // The worker's metrics, scraped while it runs (the last counts may take a moment to reach the exporter).
      const records = worker.records();
      const appSamples = (samples: MetricSample[], name: string) =>
        samples.filter(
          (sample) =>
            (sample.name === name || sample.name === `${name}_total`) && sample.labels.application === applicationName,
        );
      let samples: MetricSample[] = [];
      let scrape = '';
      for (let i = 0; i < 50; i++) {
        ({ text: scrape, samples } = await scrapeMetrics(metricsPort));
        if (sum(appSamples(samples, 'kcl_records_processed')) >= records.length) break;
        await sleep(200);
      }

      // Assess: every record delivered; duplicates only from worker moves (a moved shard resumes at its checkpoint).
      const counts = new Map<string, number>();
      for (const record of records) counts.set(record.data, (counts.get(record.data) ?? 0) + 1);
      const duplicates = records.length - counts.size;
      const missing = expected.filter((data) => !counts.has(data));
      const workerMoves = shardResults.reduce((total, result) => total + result.counters.workerMoves, 0);
      const batches = shardResults.reduce((total, result) => total + result.counters.batches, 0);
      const processed = shardResults.reduce((total, result) => total + result.counters.recordsProcessed, 0);

      const getRecords = kinesisProxy.log.filter((call) => call.operation === 'GetRecords');
      const failedReads = getRecords.filter((call) => call.fault && FAILING.has(call.fault)).length;
      const checkpointWrites = dynamoProxy.log.filter(
        (call) => call.operation === 'UpdateItem' && call.request.includes('#checkpoint'),
      );
      const failedCheckpoints = checkpointWrites.filter((call) => call.fault && FAILING.has(call.fault)).length;
      const gaps = [kinesisProxy, dynamoProxy].map((proxy) => retryGaps(proxy.log));
      const allGaps = gaps.flatMap((g) => g.gaps);
      const tooSoon = allGaps.filter((gap) => gap.gapMs < gap.floorMs * TOLERANCE);
      const gapsOf = (operation: string) =>
        allGaps
          .filter((gap) => gap.operation === operation)
          .map((gap) => gap.gapMs)
          .sort((a, b) => a - b);

      const kcl = samples.filter((sample) => sample.name.startsWith('kcl_'));
      const retrySamples = appSamples(samples, 'kcl_activity_retries');
      const retriesBy = new Map<string, number>();
      for (const sample of retrySamples) {
        const activity = sample.labels.activity ?? '(none)';
        retriesBy.set(activity, (retriesBy.get(activity) ?? 0) + sample.value);
      }
      const metricRecords = sum(appSamples(samples, 'kcl_records_processed'));

      console.log(
        `[aws-faults] ${expected.length} user records (${PUTS} Kinesis records, every third an aggregate of 3) on ${SHARDS} shards; ` +
          `worker ready in ${ready - started} ms, all delivered ${delivered - ready} ms after, stopped in ${stopped - delivered} ms`,
      );
      console.log(`[aws-faults] kinesis proxy: ${describeFaults(kinesisProxy)}`);
      console.log(`[aws-faults] dynamodb proxy: ${describeFaults(dynamoProxy)}`);
      console.log(
        `[aws-faults] delivered ${records.length} (${counts.size} distinct, ${duplicates} duplicates, ${missing.length} missing); ` +
          `${batches} batches, ${processed} records per the consumers, ${workerMoves} worker moves; ` +
          `stream consumer ended ${JSON.stringify(streamResult?.ended)}`,
      );
      console.log(
        `[aws-faults] GetRecords calls ${getRecords.length} = ${batches} batches + ${failedReads} failed reads + ` +
          `${getRecords.length - batches - failedReads} unused; checkpoint writes ${checkpointWrites.length} (${failedCheckpoints} failed)`,
      );
      console.log(
        `[aws-faults] retry gaps after a failed call (ms): GetRecords [${gapsOf('GetRecords').join(', ')}], ` +
          `UpdateItem [${gapsOf('UpdateItem').join(', ')}], others ${JSON.stringify(allGaps.filter((gap) => gap.operation !== 'GetRecords' && gap.operation !== 'UpdateItem').map((gap) => `${gap.operation} ${gap.gapMs}`))}; ` +
          `${gaps.reduce((n, g) => n + g.unretried.length, 0)} failed calls never repeated`,
      );
      console.log(
        `[aws-faults] worker log: ${(worker.output().match(/Activity failed/g) ?? []).length} "Activity failed" warnings, ` +
          `${(worker.output().match(/\[ERROR\]/g) ?? []).length} errors\n` +
          `[aws-faults] metrics: kcl_records_processed ${metricRecords}; kcl_activity_retries ${JSON.stringify(Object.fromEntries(retriesBy))}; ` +
          `series names ${JSON.stringify([...new Set(kcl.map((s) => s.name))])}`,
      );

      assert.deepEqual(missing, [], 'every record delivered');
      assert.ok(
        duplicates <= workerMoves * MAX_RECORDS * 3,
        `${duplicates} duplicates with ${workerMoves} worker moves (at most one batch, not yet checkpointed, per move)`,
      );
      if (workerMoves === 0) assert.equal(processed, records.length, 'the consumers count what the processor received');
      assert.deepEqual(streamResult?.ended, { REQUESTED: SHARDS }, 'every shard consumer ended on the stop request');
      for (const result of shardResults) assert.equal(result.reason, 'REQUESTED');
      const shutdowns = worker.lines().filter((line) => line.kind === 'shutdown');
      assert.deepEqual(
        shutdowns.map((line) => (line.kind === 'shutdown' ? line.reason : '')).sort(),
        Array(SHARDS).fill('REQUESTED'),
      );
      // In order within each shard: sequence numbers (and sub-sequence numbers) never go back.
      for (const shardId of shardIds) {
        const positions = records
          .filter((record) => record.shardId === shardId)
          .map((record) => [BigInt(record.sequenceNumber), record.subSequenceNumber ?? 0] as const);
        for (let i = 1; i < positions.length && workerMoves === 0; i++) {
          const [seq, sub] = positions[i]!;
          const [prevSeq, prevSub] = positions[i - 1]!;
          assert.ok(seq > prevSeq || (seq === prevSeq && sub > prevSub), `${shardId} delivered out of order at ${i}`);
        }
      }

      for (const [name, proxy] of [
        ['kinesis', kinesisProxy],
        ['dynamodb', dynamoProxy],
      ] as const) {
        for (const kind of ALL_FAULTS) assert.ok(proxy.faults[kind] > 0, `${name} proxy injected no '${kind}' fault`);
      }
      assert.ok(failedReads > 0 && failedCheckpoints > 0, 'faults hit GetRecords and checkpoint writes');

      // No tight loops: every GetRecords call was a batch, a failed read, a poll of a quiet shard's wait on the worker
      // (one per idleTimeBetweenReadsMs per shard at most), or a read the stop left unused (one per shard).
      const unused = getRecords.length - batches - failedReads;
      const polls = SHARDS * Math.ceil((stopped - ready) / IDLE_MS);
      assert.ok(
        unused >= 0 && unused <= polls + SHARDS + 2 * workerMoves,
        `${unused} GetRecords calls beyond batches and faults (at most ${polls} polls of quiet shards)`,
      );
      // Backoff: a failed call is repeated no sooner than its retry policy's initial interval.
      assert.ok(allGaps.length >= failedReads, 'retries measured');
      assert.deepEqual(
        tooSoon.map((gap) => `${gap.operation} after ${gap.fault}: ${gap.gapMs} ms < ${gap.floorMs} ms`),
        [],
        'retries spaced by the policy',
      );

      // Metrics: retries tagged by activity, and the records processed.
      assert.equal(metricRecords, records.length, 'kcl_records_processed equals the records delivered');
      // windowed: reads happen inside the window activity, so a failed read is a retry of the window.
      const readActivity = testExecution() === 'windowed' ? 'processWindow' : 'getRecords';
      const readRetries = retriesBy.get(readActivity) ?? 0;
      assert.ok(
        readRetries <= failedReads && readRetries >= failedReads - SHARDS,
        `kcl_activity_retries{activity=${readActivity}} ${readRetries} for ${failedReads} failed reads`,
      );
      assert.equal(retriesBy.get('checkpoint') ?? 0, failedCheckpoints, 'a retry per failed checkpoint write');
      assert.ok(!retriesBy.has('(none)'), 'every retry is tagged with its activity');
      assert.match(scrape, /kcl_activity_retries/);
      // The faults stay in activities: no workflow task failed and nothing was logged as an error.
      assert.doesNotMatch(
        worker.output(),
        /Failing workflow task|\[ERROR\]/,
        'no workflow task failures or errors logged',
      );
    } finally {
      await worker?.stop();
      if (worker) writeFileSync(join(directory, 'worker-output.log'), worker.output());
      await kinesisProxy.close();
      await dynamoProxy.close();
    }
  });
});

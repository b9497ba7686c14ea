/**
 * Expired shard iterators: Kinesis answers GetRecords with ExpiredIteratorException when an iterator is older than five
 * minutes, e.g. when processing is slower than that. A fault proxy in front of kinesis-local plays Kinesis: it expires
 * iterators older than a short lifetime (with a processor that sleeps longer than that), or every third GetRecords call.
 * The processor checkpoints once, early, so the durable checkpoint lags far behind: the consumer must resume right after
 * the last record it processed (not at the checkpoint), lose nothing, deliver nothing twice, and count each expiry.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CheckpointTable } from '../../src/checkpoint/checkpoint-table';
import { getStreamProgress, startStreamConsumer, stopStreamConsumer } from '../../src/client/consumers';
import type { Checkpoint } from '../../src/positions';
import type { RecordProcessorFactory } from '../../src/record-processor';
import { type GetRecordsCall, type ProxyCall, startFaultProxy } from '../helpers/fault-proxy';
import { createStream, kclTestContextForSuite, testWorker } from '../helpers/kcl';
import { putMixedRecords } from '../helpers/mixed-records';
import { uniqueName } from '../helpers/stack';

const SHARDS = 2;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Delivered {
  shardId: string;
  sequenceNumber: string;
  subSequenceNumber?: number;
  data: string;
  /** When processRecords finished with the record's batch. */
  at: number;
}

interface Scenario {
  name: string;
  /** Kinesis records put (every third an aggregate of three user records). */
  puts: number;
  maxRecords: number;
  /** processRecords takes this long per batch. */
  processMs: number;
  /** Which GetRecords calls the proxy answers with ExpiredIteratorException (while records remain to be delivered). */
  expire: (call: GetRecordsCall) => boolean;
  /** Expiries the scenario must produce at least. */
  minExpiries: number;
  /** Batches per workflow run (the cursor, iterator and counters cross continue-as-new). @default 500 */
  maxBatchesPerRun?: number;
  /** The shard option (prefetch and the worker's read-ahead). @default true */
  prefetch?: boolean;
}

interface Resume {
  shardId: string;
  /** The iterator request after an expiry. */
  type: string;
  startingSequenceNumber?: string;
  /** The last record processed on the shard before that request, if any. */
  lastProcessed?: Delivered;
}

/** The GetShardIterator request that follows each expired GetRecords call on the same shard. */
function resumesAfterExpiry(log: ProxyCall[], delivered: Delivered[]): { resumes: Resume[]; unresumed: number } {
  const resumes: Resume[] = [];
  let unresumed = 0;
  log.forEach((call, i) => {
    if (call.fault !== 'expired-iterator') return;
    const next = log
      .slice(i + 1)
      .find((later) => later.operation === 'GetShardIterator' && later.shardId === call.shardId);
    if (!next || call.shardId === undefined) {
      unresumed++;
      return;
    }
    const request = JSON.parse(next.request) as { ShardIteratorType: string; StartingSequenceNumber?: string };
    const lastProcessed = delivered.filter((record) => record.shardId === call.shardId && record.at <= next.at).at(-1);
    resumes.push({
      shardId: call.shardId,
      type: request.ShardIteratorType,
      ...(request.StartingSequenceNumber ? { startingSequenceNumber: request.StartingSequenceNumber } : {}),
      ...(lastProcessed ? { lastProcessed } : {}),
    });
  });
  return { resumes, unresumed };
}

const sequenceOf = (checkpoint: Checkpoint | undefined) =>
  typeof checkpoint === 'object' ? BigInt(checkpoint.sequenceNumber) : -1n;

describe('expired shard iterators', () => {
  const context = kclTestContextForSuite();

  async function run(scenario: Scenario): Promise<void> {
    // Prepare: plain records and aggregates; a processor that checkpoints its first batch only; a proxy that expires.
    const streamName = await createStream(context.kinesis, SHARDS, 'expiry');
    const applicationName = uniqueName('app-expiry');
    const taskQueue = uniqueName('tq-expiry');
    const expected = await putMixedRecords(context.kinesis, streamName, { puts: scenario.puts });
    let expiring = true;
    const proxy = await startFaultProxy({
      target: context.stack.aws.kinesisEndpoint,
      faultRate: 0,
      expireIterator: (call) => expiring && scenario.expire(call),
    });
    const delivered: Delivered[] = [];
    const firstCheckpoints = new Map<string, string>();
    const factory: RecordProcessorFactory = ({ shardId }) => ({
      async processRecords({ records, checkpointer }) {
        await sleep(scenario.processMs);
        const at = Date.now();
        for (const record of records) {
          delivered.push({
            shardId,
            sequenceNumber: record.sequenceNumber,
            ...(record.subSequenceNumber === undefined ? {} : { subSequenceNumber: record.subSequenceNumber }),
            data: Buffer.from(record.data).toString(),
            at,
          });
        }
        const last = records.at(-1);
        if (last && !firstCheckpoints.has(shardId)) {
          await checkpointer.checkpoint();
          firstCheckpoints.set(shardId, last.sequenceNumber);
        }
      },
      async shutdown({ checkpointer }) {
        if (checkpointer) await checkpointer.checkpoint();
      },
    });
    const worker = await testWorker(context, {
      processors: { expiring: factory },
      taskQueue,
      aws: { ...context.stack.aws, kinesisEndpoint: proxy.endpoint },
    });
    const table = new CheckpointTable({ dynamoDb: context.dynamoDb, tableName: applicationName });
    const started = Date.now();

    try {
      // Act: consume until every record is delivered; then stop expiring and let the consumers count what they saw.
      const figures = await worker.runUntil(
        (async () => {
          await startStreamConsumer(context.client, {
            applicationName,
            streamName,
            taskQueue,
            processor: 'expiring',
            shardOptions: {
              initialPosition: 'TRIM_HORIZON',
              maxRecords: scenario.maxRecords,
              idleTimeBetweenReadsMs: 100,
              ...(scenario.maxBatchesPerRun ? { maxBatchesPerRun: scenario.maxBatchesPerRun } : {}),
              ...(scenario.prefetch === undefined ? {} : { prefetch: scenario.prefetch }),
            },
          });
          const wanted = new Set(expected.map((record) => record.data));
          const complete = () => {
            const seen = new Set(delivered.map((record) => record.data));
            return [...wanted].every((data) => seen.has(data));
          };
          for (let i = 0; !complete(); i++) {
            assert.ok(i < 1_200, `only ${delivered.length} of ${expected.length} records delivered within 120 s`);
            await sleep(100);
          }
          const allDelivered = Date.now();
          expiring = false;
          let counted = 0;
          for (let i = 0; ; i++) {
            const status = await getStreamProgress(context.client, { applicationName, streamName });
            counted = status.shards.reduce((n, shard) => n + (shard.progress?.counters.expiredIterators ?? 0), 0);
            if (counted === proxy.expiredIterators || i >= 100) break;
            await sleep(100);
          }
          const leases = await table.listLeases();
          const stopped = await stopStreamConsumer(context.client, { applicationName, streamName, wait: true });
          return { allDelivered, counted, leases, stopped };
        })(),
      );

      // Assess
      const { resumes, unresumed } = resumesAfterExpiry(proxy.log, delivered);
      const duplicates = delivered.length - new Set(delivered.map((record) => record.data)).size;
      const durable = new Map(figures.leases.map((lease) => [lease.shardId, lease.checkpoint]));
      const pastCheckpoint = resumes.filter(
        (resume) =>
          resume.startingSequenceNumber !== undefined &&
          BigInt(resume.startingSequenceNumber) > sequenceOf(durable.get(resume.shardId)),
      ).length;
      const getRecords = proxy.calls.get('GetRecords') ?? 0;
      console.log(
        `[expired-iterator] ${scenario.name}: ${expected.length} user records (${scenario.puts} Kinesis records) on ${SHARDS} shards, ` +
          `maxRecords ${scenario.maxRecords}, processRecords ${scenario.processMs} ms, ${scenario.maxBatchesPerRun ?? 500} batches per run; ` +
          `all delivered in ${figures.allDelivered - started} ms`,
      );
      console.log(
        `[expired-iterator] ${scenario.name}: ${proxy.expiredIterators} GetRecords of ${getRecords} answered ExpiredIteratorException; ` +
          `consumers counted ${figures.counted}; ${proxy.calls.get('GetShardIterator') ?? 0} GetShardIterator calls; ` +
          `resumed ${JSON.stringify(resumes.reduce<Record<string, number>>((n, r) => ({ ...n, [r.type]: (n[r.type] ?? 0) + 1 }), {}))}, ` +
          `${pastCheckpoint} of them past the durable checkpoint; delivered ${delivered.length} (${duplicates} duplicates); ` +
          `durable checkpoints before stop ${JSON.stringify(Object.fromEntries(durable))}`,
      );

      assert.ok(
        proxy.expiredIterators >= scenario.minExpiries,
        `${proxy.expiredIterators} expiries (want >= ${scenario.minExpiries})`,
      );
      assert.equal(figures.counted, proxy.expiredIterators, 'progress counters.expiredIterators counts every expiry');
      // Nothing lost, nothing delivered twice, in order within each shard.
      assert.deepEqual(
        delivered.map((record) => record.data).sort(),
        expected.map((record) => record.data).sort(),
        'every record delivered exactly once',
      );
      for (let s = 0; s < SHARDS; s++) {
        const shardId = `shardId-${String(s).padStart(12, '0')}`;
        assert.deepEqual(
          delivered.filter((record) => record.shardId === shardId).map((record) => record.data),
          expected.filter((record) => record.shardId === shardId).map((record) => record.data),
          `${shardId} delivered in the order put`,
        );
      }
      // Each expiry resumed right after the last record processed (or at the start, if none was), never at the checkpoint.
      assert.equal(unresumed, 0, 'every expiry is followed by a new iterator');
      assert.equal(resumes.length, proxy.expiredIterators);
      for (const resume of resumes) {
        if (resume.lastProcessed) {
          assert.deepEqual(
            [resume.type, resume.startingSequenceNumber],
            ['AFTER_SEQUENCE_NUMBER', resume.lastProcessed.sequenceNumber],
            `${resume.shardId} resumes after the last record processed`,
          );
        } else {
          assert.equal(resume.type, 'TRIM_HORIZON', `${resume.shardId} resumes at the start before any record`);
        }
      }
      assert.ok(pastCheckpoint > 0, 'some resumes were past the (rarely written) durable checkpoint');
      // The durable checkpoint stayed where the processor put it: the first batch.
      for (const [shardId, sequenceNumber] of firstCheckpoints) {
        assert.equal(sequenceOf(durable.get(shardId)), BigInt(sequenceNumber), `${shardId} checkpointed only once`);
      }
      assert.deepEqual(figures.stopped?.ended, { REQUESTED: SHARDS });
    } finally {
      await proxy.close();
    }
  }

  test('a processor slower than the iterator lifetime: resumes after the last processed record, not the checkpoint', () =>
    run({
      name: 'slow processor',
      puts: 45,
      maxRecords: 2,
      // Iterators live 250 ms here; each batch takes 400 ms, so each next read's iterator is stale by then. (With
      // prefetch on, the worker reads a behind shard's next batch at once, before its iterator can age: off here.)
      processMs: 400,
      prefetch: false,
      expire: (call) => (call.ageMs ?? 0) > 250,
      minExpiries: 4,
      // Runs of four batches: a run may end holding an iterator that is already stale, and counts must carry over.
      maxBatchesPerRun: 4,
    }));

  test('every third GetRecords call expires (the very first included): nothing lost, nothing re-delivered', () =>
    run({
      name: 'every third read',
      puts: 60,
      maxRecords: 3,
      processMs: 0,
      expire: (call) => call.index % 3 === 1,
      minExpiries: 8,
      // Prefetch on (the default): expiries also hit reads made ahead, which count once, when the workflow takes them.
    }));
});

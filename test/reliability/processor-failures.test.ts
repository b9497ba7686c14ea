/**
 * Processing failures on the real local stack: a batch that fails is retried by policy and never skipped (Java KCL skips
 * it); a poison record is dead-lettered (callback, DynamoDB table, Kinesis stream; alone or with its whole batch) while
 * the rest of the shard keeps flowing; or the shard halts until it is fixed and told to retry.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ScanCommand } from '@aws-sdk/client-dynamodb';
import { GetRecordsCommand, GetShardIteratorCommand } from '@aws-sdk/client-kinesis';
import type { WorkflowHandle } from '@temporalio/client';
import type { DeadLetterEntry } from '../../src/activities';
import { CheckpointTable } from '../../src/checkpoint/checkpoint-table';
import type { DeadLetterDestination, ShardConsumerResult, ShardProgress } from '../../src/consumer-types';
import { getFreePort } from '../../src/dev/net';
import type { ShardConsumerOptions } from '../../src/options';
import { progressQuery, retrySignal, type shardConsumerWorkflow, stopSignal } from '../../src/workflows/shard-consumer';
import {
  createStream,
  firstShardId,
  kclTestContext,
  type KclTestContext,
  putRecords,
  type Recording,
  recordingProcessor,
  startShardConsumer,
  testWorker,
  progressWhen,
} from '../helpers/kcl';
import { installQuietRuntime } from '../helpers/runtime';
import { uniqueName } from '../helpers/stack';

/** One single-shard stream filled with records `r00`, `r01`, ...; those at `poison` read `POISON rNN`. */
interface Scenario {
  streamName: string;
  shardId: string;
  applicationName: string;
  taskQueue: string;
  texts: string[];
  sequenceNumbers: string[];
}

const text = (data: Uint8Array) => Buffer.from(data).toString('utf8');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('processing failures on the real local stack', () => {
  let context: KclTestContext;
  let metricsUrl: string;

  before(async () => {
    const port = await getFreePort();
    // The workers of this process export Temporal's and temporal-kcl's metrics here (as `worker --metrics-port` does).
    installQuietRuntime({ prometheusBindAddress: `127.0.0.1:${port}` });
    metricsUrl = `http://127.0.0.1:${port}/metrics`;
    context = await kclTestContext();
  });
  after(async () => {
    await context.close();
  });

  async function scenario(count: number, poison: number[] = []): Promise<Scenario> {
    const streamName = await createStream(context.kinesis, 1, 'failures');
    const shardId = await firstShardId(context.kinesis, streamName);
    const texts = Array.from({ length: count }, (_, i) => {
      const name = `r${String(i).padStart(2, '0')}`;
      return poison.includes(i) ? `POISON ${name}` : name;
    });
    const puts = await putRecords(
      context.kinesis,
      streamName,
      texts.map((data, i) => ({ partitionKey: `pk-${i}`, data })),
    );
    return {
      streamName,
      shardId,
      applicationName: uniqueName('app'),
      taskQueue: uniqueName('tq'),
      texts,
      sequenceNumbers: puts.map((put) => put.sequenceNumber),
    };
  }

  function start(s: Scenario, options: ShardConsumerOptions): Promise<WorkflowHandle<typeof shardConsumerWorkflow>> {
    return startShardConsumer(context, {
      taskQueue: s.taskQueue,
      applicationName: s.applicationName,
      streamName: s.streamName,
      shardId: s.shardId,
      processor: 'poison-aware',
      options: { initialPosition: 'TRIM_HORIZON', maxRecords: 5, idleTimeBetweenReadsMs: 200, ...options },
    });
  }

  /** Sum of a metric's samples for one stream, from this process's Prometheus endpoint. */
  async function metric(name: string, streamName: string, extraLabel?: string): Promise<number> {
    const body = await (await fetch(metricsUrl)).text();
    let sum = 0;
    for (const line of body.split('\n')) {
      if (!line.startsWith(`${name}{`) && !line.startsWith(`${name}_total{`)) continue;
      if (!line.includes(`stream="${streamName}"`)) continue;
      if (extraLabel && !line.includes(extraLabel)) continue;
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    return sum;
  }

  /** Polls a metric until it reaches `expected` (the exporter is pulled, the values are pushed asynchronously). */
  async function metricReaches(name: string, streamName: string, expected: number, extraLabel?: string) {
    let value = 0;
    for (let i = 0; i < 50; i++) {
      value = await metric(name, streamName, extraLabel);
      if (value >= expected) break;
      await sleep(100);
    }
    return value;
  }

  async function progressUntil(
    handle: WorkflowHandle<typeof shardConsumerWorkflow>,
    predicate: (progress: ShardProgress) => boolean,
    timeoutMs = 30_000,
  ): Promise<ShardProgress> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const progress = await handle.query(progressQuery);
      if (predicate(progress)) return progress;
      if (Date.now() > deadline) throw new Error(`progress never matched; last: ${JSON.stringify(progress)}`);
      await sleep(100);
    }
  }

  /**
   * Starts the consumer of a 12-record scenario, waits until its last record (r11) is delivered and 3 batches are
   * counted, and stops it; returns the progress from before the stop, and the result.
   */
  async function consumeToR11AndStop(
    s: Scenario,
    recording: Recording,
    options: ShardConsumerOptions,
  ): Promise<{ progress: ShardProgress; result: ShardConsumerResult }> {
    const handle = await start(s, options);
    await recording.until((r) => r.records.some((record) => text(record.data) === 'r11'));
    const progress = await progressUntil(handle, (p) => p.counters.batches >= 3);
    await handle.signal(stopSignal);
    return { progress, result: await handle.result() };
  }

  async function checkpointOf(s: Scenario) {
    const table = new CheckpointTable({ dynamoDb: context.dynamoDb, tableName: s.applicationName });
    return (await table.getLease(s.shardId))?.checkpoint;
  }

  /** A recording processor that throws on every batch holding a POISON record it has not been "fixed" for. */
  function poisonAwareProcessor(options: { failFirstAttemptsOf?: { text: string; attempts: number } } = {}) {
    const calls: string[][] = [];
    const fixed = new Set<string>();
    const { factory, recording } = recordingProcessor({
      onBatch: (input) => {
        const texts = input.records.map((record) => text(record.data));
        calls.push(texts);
        const flaky = options.failFirstAttemptsOf;
        if (flaky && texts.includes(flaky.text)) {
          const attempt = calls.filter((call) => call.includes(flaky.text)).length;
          if (attempt <= flaky.attempts) throw new Error(`transient failure, attempt ${attempt}`);
        }
        const poison = texts.find((t) => t.startsWith('POISON') && !fixed.has(t));
        if (poison) throw new Error(`cannot process ${poison}`);
      },
    });
    return { factory, recording, calls, fixed };
  }

  test('a batch that throws on its first 2 attempts is retried by policy and delivered: nothing skipped or lost', async () => {
    // Prepare: 12 records in batches of 5; the batch holding r05 fails twice, then succeeds.
    const s = await scenario(12);
    const { factory, recording, calls } = poisonAwareProcessor({ failFirstAttemptsOf: { text: 'r05', attempts: 2 } });
    const worker = await testWorker(context, { processors: { 'poison-aware': factory }, taskQueue: s.taskQueue });

    // Act
    const { progress, result } = await worker.runUntil(
      (async () => {
        const handle = await start(s, { processingRetry: { initialIntervalMs: 100 } });
        await recording.until((r) => r.records.length >= s.texts.length);
        const progress = await progressWhen(handle, (p) => p.counters.recordsProcessed >= s.texts.length);
        await handle.signal(stopSignal);
        return { progress, result: await handle.result() };
      })(),
    );

    // Assess: delivered once each, in order; the failing batch was seen 3 times (KCL would have skipped it after one).
    const attemptsOfBatch = calls.filter((call) => call.includes('r05'));
    console.log(
      `retried batch [${attemptsOfBatch[0]?.join(',')}] seen ${attemptsOfBatch.length} times; ` +
        `${recording.records.length}/${s.texts.length} records delivered; ${calls.length} processRecords calls`,
    );
    assert.equal(attemptsOfBatch.length, 3);
    assert.ok(
      attemptsOfBatch.every((call) => call.join() === attemptsOfBatch[0]?.join()),
      'the same batch each time',
    );
    assert.deepEqual(
      recording.records.map((r) => text(r.data)),
      s.texts,
    );
    assert.equal(progress.counters.recordsProcessed, s.texts.length);
    assert.equal(progress.counters.deadLetteredRecords, 0);
    assert.equal(result.reason, 'REQUESTED');
    assert.deepEqual(await checkpointOf(s), { sequenceNumber: s.sequenceNumbers.at(-1), subSequenceNumber: 0 });
    const retries = await metricReaches('kcl_activity_retries', s.streamName, 2, 'activity="processRecords"');
    console.log(`kcl_activity_retries{activity="processRecords"} = ${retries}`);
    assert.equal(retries, 2);
  });

  /**
   * A poison record at r06 (batch r05..r09) with RECORD granularity: only it goes to `destination`; r05 and r07..r09
   * (its batch) and r10, r11 (after it) are delivered. Returns what was dead-lettered, as `readBack` finds it.
   */
  async function poisonRecordScenario<T>(
    destination: (s: Scenario) => Promise<DeadLetterDestination>,
    readBack: (s: Scenario, callbackEntries: DeadLetterEntry[]) => Promise<T[]>,
  ): Promise<{ s: Scenario; deadLettered: T[]; progress: ShardProgress; result: ShardConsumerResult }> {
    const s = await scenario(12, [6]);
    const poisonSequenceNumber = s.sequenceNumbers[6];
    const entries: DeadLetterEntry[] = [];
    const { factory, recording, calls } = poisonAwareProcessor();
    const worker = await testWorker(context, {
      processors: { 'poison-aware': factory },
      taskQueue: s.taskQueue,
      deadLetterHandlers: { 'test-dlq': (dead) => void entries.push(...dead) },
    });
    const deadLetter = await destination(s);

    const { progress, result } = await worker.runUntil(
      consumeToR11AndStop(s, recording, {
        processingRetry: { maximumAttempts: 3, initialIntervalMs: 100 },
        onProcessingFailure: 'DEAD_LETTER',
        deadLetterGranularity: 'RECORD',
        deadLetter,
      }),
    );
    const deadLettered = await readBack(s, entries);

    // Every other record delivered exactly once, in order, including those after the poison record.
    const expected = s.texts.filter((t) => !t.startsWith('POISON'));
    assert.deepEqual(
      recording.records.map((r) => text(r.data)),
      expected,
    );
    // The poison batch was tried maximumAttempts times, then re-delivered record by record.
    const poisonBatchAttempts = calls.filter((call) => call.length > 1 && call.includes('POISON r06'));
    const singles = calls.filter((call) => call.length === 1).map((call) => call[0]);
    assert.equal(poisonBatchAttempts.length, 3);
    assert.deepEqual(singles, poisonBatchAttempts[0]);
    // Progress shows the dead-lettered position.
    assert.equal(progress.counters.deadLetteredRecords, 1);
    assert.equal(progress.counters.deadLetteredBatches, 1);
    assert.equal(progress.recentDeadLetters.length, 1);
    const [report] = progress.recentDeadLetters;
    assert.deepEqual(report?.first, { sequenceNumber: poisonSequenceNumber });
    assert.deepEqual(report?.last, { sequenceNumber: poisonSequenceNumber });
    assert.equal(report?.records, 1);
    assert.match(report?.error ?? '', /POISON r06/);
    assert.equal(progress.counters.recordsProcessed, expected.length, 'records processed excludes the dead-lettered');
    assert.equal(progress.counters.bytesProcessed, Buffer.byteLength(expected.join('')));
    assert.equal(result.counters.deadLetteredRecords, 1);
    // Checkpointed past it, at the last record.
    assert.deepEqual(await checkpointOf(s), { sequenceNumber: s.sequenceNumbers.at(-1), subSequenceNumber: 0 });
    // Metrics count it.
    const counted = await metricReaches('kcl_dead_lettered_records', s.streamName, 1);
    const processed = await metricReaches('kcl_records_processed', s.streamName, expected.length);
    console.log(
      `${deadLetter.type}: ${deadLettered.length} dead-lettered (progress ${progress.counters.deadLetteredRecords}, ` +
        `kcl_dead_lettered_records ${counted}); ${recording.records.length} delivered (kcl_records_processed ${processed}); ` +
        `poison batch tried ${poisonBatchAttempts.length}x then ${singles.length} single deliveries`,
    );
    assert.equal(counted, 1);
    assert.equal(processed, expected.length);
    return { s, deadLettered, progress, result };
  }

  test('poison record, RECORD granularity, CALLBACK destination: only it reaches the handler; the shard moves on', async () => {
    const { s, deadLettered } = await poisonRecordScenario(
      async () => ({ type: 'CALLBACK', name: 'test-dlq' }),
      async (_s, entries) => entries,
    );
    assert.equal(deadLettered.length, 1);
    const [entry] = deadLettered;
    assert.equal(entry?.record.sequenceNumber, s.sequenceNumbers[6]);
    assert.equal(entry?.record.partitionKey, 'pk-6');
    assert.equal(text(entry?.record.data ?? new Uint8Array()), 'POISON r06');
    assert.equal(entry?.shardId, s.shardId);
    assert.equal(entry?.streamName, s.streamName);
    assert.match(entry?.error ?? '', /cannot process POISON r06/);
  });

  test('poison record, RECORD granularity, DYNAMODB destination: one item with its id, position, key, bytes and error', async () => {
    let tableName = '';
    const { s, deadLettered } = await poisonRecordScenario(
      async () => {
        tableName = uniqueName('dlq-table'); // does not exist yet: created on demand
        return { type: 'DYNAMODB', tableName };
      },
      async () =>
        (await context.dynamoDb.send(new ScanCommand({ TableName: tableName, ConsistentRead: true }))).Items ?? [],
    );
    assert.equal(deadLettered.length, 1);
    const [item] = deadLettered;
    assert.equal(item?.id?.S, `${s.applicationName}/${s.streamName}/${s.shardId}/${s.sequenceNumbers[6]}/0`);
    assert.equal(item?.sequenceNumber?.S, s.sequenceNumbers[6]);
    assert.equal(item?.partitionKey?.S, 'pk-6');
    assert.equal(item?.shardId?.S, s.shardId);
    assert.deepEqual(Buffer.from(item?.data?.B ?? new Uint8Array()), Buffer.from('POISON r06'));
    assert.match(item?.error?.S ?? '', /cannot process POISON r06/);
  });

  test('poison record, RECORD granularity, KINESIS destination: one JSON envelope whose data is the original record', async () => {
    let dlqStream = '';
    const { s, deadLettered } = await poisonRecordScenario(
      async () => {
        dlqStream = await createStream(context.kinesis, 1, 'dlq');
        return { type: 'KINESIS', streamName: dlqStream };
      },
      async () => {
        const { ShardIterator } = await context.kinesis.send(
          new GetShardIteratorCommand({
            StreamName: dlqStream,
            ShardId: await firstShardId(context.kinesis, dlqStream),
            ShardIteratorType: 'TRIM_HORIZON',
          }),
        );
        const { Records } = await context.kinesis.send(new GetRecordsCommand({ ShardIterator }));
        return (Records ?? []).map((record) => ({
          partitionKey: record.PartitionKey,
          envelope: JSON.parse(text(record.Data ?? new Uint8Array())) as Record<string, unknown>,
        }));
      },
    );
    assert.equal(deadLettered.length, 1);
    const [put] = deadLettered;
    assert.equal(put?.partitionKey, 'pk-6');
    assert.equal(put?.envelope.data, Buffer.from('POISON r06').toString('base64'));
    assert.equal(put?.envelope.sequenceNumber, s.sequenceNumbers[6]);
    assert.equal(put?.envelope.partitionKey, 'pk-6');
    assert.equal(put?.envelope.shardId, s.shardId);
    assert.equal(put?.envelope.streamName, s.streamName);
    assert.equal(put?.envelope.applicationName, s.applicationName);
    assert.match(String(put?.envelope.error), /cannot process POISON r06/);
  });

  test('BATCH granularity dead-letters the whole batch that kept failing, and delivers everything else', async () => {
    // Prepare
    const s = await scenario(12, [6]);
    const entries: DeadLetterEntry[] = [];
    const { factory, recording, calls } = poisonAwareProcessor();
    const worker = await testWorker(context, {
      processors: { 'poison-aware': factory },
      taskQueue: s.taskQueue,
      deadLetterHandlers: { 'test-dlq': (dead) => void entries.push(...dead) },
    });

    // Act
    const { progress } = await worker.runUntil(
      consumeToR11AndStop(s, recording, {
        processingRetry: { maximumAttempts: 3, initialIntervalMs: 100 },
        onProcessingFailure: 'DEAD_LETTER',
        deadLetterGranularity: 'BATCH',
        deadLetter: { type: 'CALLBACK', name: 'test-dlq' },
      }),
    );

    // Assess: the failing batch (r05..r09 with maxRecords 5) is dead-lettered whole, never re-delivered record by record.
    const failing = calls.filter((call) => call.includes('POISON r06'));
    const batch = failing[0] ?? [];
    console.log(
      `BATCH: ${entries.length} dead-lettered [${entries.map((e) => text(e.record.data)).join(',')}], ` +
        `poison batch tried ${failing.length}x, ${recording.records.length} delivered; progress ${progress.counters.deadLetteredRecords}`,
    );
    assert.equal(failing.length, 3);
    assert.ok(batch.length > 1, 'the poison record shares its batch with others');
    assert.deepEqual(
      entries.map((e) => text(e.record.data)),
      batch,
    );
    assert.deepEqual(
      recording.records.map((r) => text(r.data)),
      s.texts.filter((t) => !batch.includes(t)),
    );
    const first = s.texts.indexOf(batch[0] ?? '');
    const last = s.texts.indexOf(batch.at(-1) ?? '');
    assert.deepEqual(progress.recentDeadLetters.length, 1);
    assert.deepEqual(progress.recentDeadLetters[0]?.first, { sequenceNumber: s.sequenceNumbers[first] });
    assert.deepEqual(progress.recentDeadLetters[0]?.last, { sequenceNumber: s.sequenceNumbers[last] });
    assert.equal(progress.recentDeadLetters[0]?.records, batch.length);
    assert.equal(progress.counters.deadLetteredRecords, batch.length);
    assert.equal(progress.counters.recordsProcessed, s.texts.length - batch.length);
    assert.equal(await metricReaches('kcl_dead_lettered_records', s.streamName, batch.length), batch.length);
  });

  test('a dead-letter destination that fails once: the write is retried, records delivered alone are not delivered again', async () => {
    // Prepare: the handler throws on its first call (say, its queue was briefly unreachable).
    const s = await scenario(12, [6]);
    const entries: DeadLetterEntry[] = [];
    let handlerCalls = 0;
    const { factory, recording, calls } = poisonAwareProcessor();
    const worker = await testWorker(context, {
      processors: { 'poison-aware': factory },
      taskQueue: s.taskQueue,
      deadLetterHandlers: {
        'flaky-dlq': (dead) => {
          handlerCalls++;
          if (handlerCalls === 1) throw new Error('dead-letter queue unreachable');
          entries.push(...dead);
        },
      },
    });

    // Act
    const { progress } = await worker.runUntil(
      consumeToR11AndStop(s, recording, {
        processingRetry: { maximumAttempts: 2, initialIntervalMs: 100 },
        onProcessingFailure: 'DEAD_LETTER',
        deadLetter: { type: 'CALLBACK', name: 'flaky-dlq' },
      }),
    );

    // Assess
    const singles = calls.filter((call) => call.length === 1).map((call) => call[0]);
    console.log(
      `flaky destination: handler called ${handlerCalls}x, ${entries.length} dead-lettered, single deliveries [${singles.join(',')}]`,
    );
    assert.equal(handlerCalls, 2);
    assert.deepEqual(
      entries.map((e) => text(e.record.data)),
      ['POISON r06'],
    );
    assert.deepEqual(
      singles,
      ['r05', 'POISON r06', 'r07', 'r08', 'r09'],
      'each record of the batch delivered alone once',
    );
    assert.deepEqual(
      recording.records.map((r) => text(r.data)),
      s.texts.filter((t) => !t.startsWith('POISON')),
    );
    assert.equal(progress.counters.deadLetteredRecords, 1);
  });

  test('HALT: the shard halts on the poison batch, resumes from it after a fix and a retry signal, and a stop while halted ends in shutdown(REQUESTED)', async () => {
    // Prepare: 15 records, batches of 5: r05..r09 holds POISON r06, r10..r14 holds POISON r12.
    const s = await scenario(15, [6, 12]);
    const { factory, recording, calls, fixed } = poisonAwareProcessor();
    const worker = await testWorker(context, { processors: { 'poison-aware': factory }, taskQueue: s.taskQueue });
    const delivered = () => recording.records.map((r) => text(r.data));

    // Act + assess while running.
    const { result, haltedAt, secondHalt, callsBeforeRetry } = await worker.runUntil(
      (async () => {
        const handle = await start(s, {
          processingRetry: { maximumAttempts: 2, initialIntervalMs: 100 },
          onProcessingFailure: 'HALT',
        });
        const haltedAt = await progressUntil(handle, (p) => p.state === 'HALTED');
        // Halted: it stays so, tries nothing more, delivers nothing after the poison batch and skips nothing.
        const callsAtHalt = calls.length;
        await sleep(1_000);
        const stillHalted = await handle.query(progressQuery);
        assert.equal(stillHalted.state, 'HALTED');
        assert.equal(calls.length, callsAtHalt, 'no attempts while halted');
        assert.deepEqual(delivered(), s.texts.slice(0, 5));

        // The processor is fixed; a retry resumes from the failed batch.
        fixed.add('POISON r06');
        const callsBeforeRetry = calls.length;
        await handle.signal(retrySignal);
        await recording.until((r) => r.records.some((record) => text(record.data) === 'r09'));
        // The next poison halts the shard again; a stop while halted shuts the processor down with a checkpointer.
        const secondHalt = await progressUntil(handle, (p) => p.state === 'HALTED');
        await handle.signal(stopSignal);
        return { result: await handle.result(), haltedAt, secondHalt, callsBeforeRetry };
      })(),
    );

    const poisonAttempts = calls.filter((call) => call.includes('POISON r06'));
    console.log(
      `HALT: halted after ${poisonAttempts.length - 1} failed attempts (${haltedAt.haltedReason}); after retry ${calls.length - callsBeforeRetry} calls; ` +
        `${delivered().length}/${s.texts.length} delivered; second halt: ${secondHalt.haltedReason}; ended ${result.reason}`,
    );
    assert.match(haltedAt.haltedReason ?? '', /cannot process POISON r06/);
    assert.deepEqual(haltedAt.lastProcessed, { sequenceNumber: s.sequenceNumbers[4] });
    assert.equal(poisonAttempts.length, 3, '2 failed attempts, then 1 after the retry signal');
    assert.equal(calls[callsBeforeRetry]?.[0], 'r05', 'processing resumes from the failed batch');
    assert.match(secondHalt.haltedReason ?? '', /cannot process POISON r12/);
    assert.deepEqual(delivered(), s.texts.slice(0, 10), 'everything up to the second poison batch, once, in order');
    assert.equal(result.reason, 'REQUESTED');
    assert.deepEqual(
      recording.shutdowns.map((x) => x.reason),
      ['REQUESTED'],
    );
    assert.equal(result.counters.deadLetteredRecords, 0);
    const lease = await new CheckpointTable({ dynamoDb: context.dynamoDb, tableName: s.applicationName }).getLease(
      s.shardId,
    );
    assert.deepEqual(lease?.checkpoint, { sequenceNumber: s.sequenceNumbers[9], subSequenceNumber: 0 });
    assert.equal(lease?.owner, undefined, 'the lease was released');
  });
});

/**
 * The worker-side read-ahead of `getRecords` (input `readAhead`, set by the workflow when `prefetch` is on), against the
 * Kinesis emulator: while a shard is behind, the read from the next iterator starts as soon as a batch is read, and the
 * workflow's next getRecords with that iterator is answered by it without a call of its own; what it returns is exactly
 * what a fresh read returns, filtered by the request that takes it; a request with another iterator reads afresh; at
 * the tip, or with `readAhead` off, nothing is read ahead. GetRecords calls are counted by a middleware on the client.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { GetRecordsCommand, GetShardIteratorCommand, type KinesisClient } from '@aws-sdk/client-kinesis';
import { MockActivityEnvironment } from '@temporalio/testing';
import { BatchCache } from '../../src/activities/batch-cache';
import { createShardReader } from '../../src/activities/shard-reader';
import { createKinesisActivities, type GetRecordsInput } from '../../src/activities/kinesis-activities';
import { ProcessorHost } from '../../src/activities/processor-host';
import { createAwsClients } from '../../src/aws/clients';
import type { BatchSummary, ShardRef } from '../../src/consumer-types';
import { createStream, kclTestContext, type KclTestContext, putRecords } from '../helpers/kcl';
import { uniqueName } from '../helpers/stack';

const RECORDS = 25;
const LIMIT = 10;

describe('getRecords read-ahead', () => {
  let context: KclTestContext;
  let kinesis: KinesisClient;
  let getRecordsCalls = 0;
  let streamName: string;
  let ref: ShardRef;
  let sequenceNumbers: string[];

  before(async () => {
    context = await kclTestContext();
    kinesis = createAwsClients(context.stack.aws).kinesis;
    kinesis.middlewareStack.add(
      (next, handlerContext) => async (args) => {
        if (handlerContext.commandName === 'GetRecordsCommand') getRecordsCalls++;
        return next(args);
      },
      { step: 'initialize', name: 'countGetRecords' },
    );
    streamName = await createStream(context.kinesis, 1, 'read-ahead');
    const puts = await putRecords(
      context.kinesis,
      streamName,
      Array.from({ length: RECORDS }, (_, i) => ({ partitionKey: `k${i % 5}`, data: `record-${i}` })),
    );
    sequenceNumbers = puts.map((put) => put.sequenceNumber);
    ref = { applicationName: uniqueName('app'), streamName, shardId: puts[0]?.shardId ?? '' };
  });

  after(async () => {
    kinesis.destroy();
    await context.close();
  });

  /** Fresh activities (their own read-ahead state) and a runner in a mock activity context. */
  function activities() {
    const cache = new BatchCache();
    const read = createKinesisActivities({
      kinesis,
      cache,
      host: new ProcessorHost({}),
      reader: createShardReader({ kinesis }),
    });
    const env = new MockActivityEnvironment();
    const getRecords = (input: Partial<GetRecordsInput> & { iterator: string }): Promise<BatchSummary> =>
      env.run<[GetRecordsInput], BatchSummary, (input: GetRecordsInput) => Promise<BatchSummary>>(
        (request) => read.getRecords(request),
        { ref, maxRecords: LIMIT, ...input },
      );
    const texts = (batch: BatchSummary) =>
      (cache.get(batch.handle)?.records ?? []).map((record) => Buffer.from(record.data).toString());
    return { getRecords, texts };
  }

  async function trimHorizon(): Promise<string> {
    const response = await context.kinesis.send(
      new GetShardIteratorCommand({ StreamName: streamName, ShardId: ref.shardId, ShardIteratorType: 'TRIM_HORIZON' }),
    );
    return response.ShardIterator ?? '';
  }

  /** What a plain GetRecords from `iterator` returns, through the test stack's own client (not counted). */
  async function freshRead(iterator: string): Promise<string[]> {
    const response = await context.kinesis.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: LIMIT }));
    return (response.Records ?? []).map((record) => Buffer.from(record.Data ?? []).toString());
  }

  const settle = () => new Promise((resolve) => setTimeout(resolve, 300));
  const texts = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `record-${from + i}`);

  test('while behind, the next batch is read ahead once and handed to the request for its iterator', async () => {
    // Prepare
    const { getRecords, texts: textsOf } = activities();
    const start = getRecordsCalls;

    // Act: three reads as the workflow makes them, each from the previous batch's next iterator.
    const first = await getRecords({ iterator: await trimHorizon(), readAhead: true });
    await settle();
    const callsAfterFirst = getRecordsCalls - start;
    const second = await getRecords({ iterator: first.nextIterator ?? '', readAhead: true });
    await settle();
    const callsAfterSecond = getRecordsCalls - start;
    const third = await getRecords({ iterator: second.nextIterator ?? '', readAhead: true });
    await settle();
    const callsAfterThird = getRecordsCalls - start;

    // Assess: each batch is what a fresh read of its iterator gives; one call per batch, plus one read ahead after each
    // full batch (the third, partial one is at the tip: nothing read ahead after it).
    console.log(`GetRecords calls after each read: ${callsAfterFirst}, ${callsAfterSecond}, ${callsAfterThird}`);
    assert.deepEqual(textsOf(first), texts(0, 10));
    assert.deepEqual(textsOf(second), texts(10, 20));
    assert.deepEqual(textsOf(third), texts(20, 25));
    assert.deepEqual(textsOf(second), await freshRead(first.nextIterator ?? ''));
    assert.equal(callsAfterFirst, 2, 'the first read, and the read ahead of the second batch');
    assert.equal(callsAfterSecond, 3, 'the second batch came from the read ahead; the third batch was read ahead');
    assert.equal(third.millisBehindLatest, 0);
    assert.equal(callsAfterThird, 3, 'a partial batch at the tip reads nothing ahead');
  });

  test('a read ahead is filtered by the request that takes it (skipUntil), not the one that started it', async () => {
    // Prepare
    const { getRecords, texts: textsOf } = activities();
    const first = await getRecords({ iterator: await trimHorizon(), readAhead: true });
    await settle();
    const start = getRecordsCalls;

    // Act
    const second = await getRecords({
      iterator: first.nextIterator ?? '',
      readAhead: true,
      skipUntil: { sequenceNumber: sequenceNumbers[12] ?? '' },
    });

    // Assess
    assert.deepEqual(textsOf(second), texts(13, 20));
    assert.equal(second.droppedCheckpointed, 3);
    assert.equal(getRecordsCalls - start, 1, 'only the next read ahead was called');
  });

  test('a request for another iterator reads afresh; readAhead off reads nothing ahead', async () => {
    // Prepare
    const { getRecords, texts: textsOf } = activities();
    const first = await getRecords({ iterator: await trimHorizon(), readAhead: true });
    await settle();
    const start = getRecordsCalls;

    // Act: the workflow starts over (say, after a worker move) from TRIM_HORIZON, with read-ahead off.
    const again = await getRecords({ iterator: await trimHorizon(), readAhead: false });
    await settle();
    const calls = getRecordsCalls - start;

    // Assess
    assert.deepEqual(textsOf(again), texts(0, 10));
    assert.equal(calls, 1, 'one fresh read, nothing ahead');
    assert.deepEqual(textsOf(first), texts(0, 10));
  });
});

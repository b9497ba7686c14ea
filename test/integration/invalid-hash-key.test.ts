/**
 * A KPL aggregate carrying a user record whose explicit hash key is not a 128-bit decimal number: that user record is
 * corrupt. It is skipped, counted and reported like an aggregate that cannot be de-aggregated; the records around it are
 * delivered and the shard goes on (it used to throw a RangeError out of the read, retried forever).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { GetShardIteratorCommand } from '@aws-sdk/client-kinesis';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createShardReader, type ReadBatch } from '../../src/activities/shard-reader';
import type { ShardRef } from '../../src/consumer-types';
import { aggregate } from '../../src/kinesis/aggregate';
import { createStream, firstShardId, kclTestContext, type KclTestContext, putRecords } from '../helpers/kcl';
import { uniqueName } from '../helpers/stack';

const WHOLE_KEY_SPACE = { startingHashKey: '0', endingHashKey: ((1n << 128n) - 1n).toString() };

describe('a user record with an invalid explicit hash key', () => {
  let context: KclTestContext;
  before(async () => {
    context = await kclTestContext();
  });
  after(async () => {
    await context.close();
  });

  for (const hashKeyRange of [WHOLE_KEY_SPACE, { startingHashKey: '0', endingHashKey: (1n << 127n).toString() }]) {
    test(`is skipped, counted and reported; the others are delivered (shard range ${hashKeyRange.endingHashKey === WHOLE_KEY_SPACE.endingHashKey ? 'whole' : 'half'})`, async () => {
      // Prepare: one aggregate, its middle user record with a garbage explicit hash key; the first one's key is '0'
      // so it stays in both ranges.
      const streamName = await createStream(context.kinesis, 1, 'bad-ehk');
      const shardId = await firstShardId(context.kinesis, streamName);
      const agg = aggregate([
        { partitionKey: 'a', data: 'ok-1', explicitHashKey: '0' },
        { partitionKey: 'b', data: 'bad', explicitHashKey: 'not-a-number' },
        { partitionKey: 'c', data: 'ok-2', explicitHashKey: '1' },
      ]);
      const [put] = await putRecords(context.kinesis, streamName, [
        { partitionKey: agg.partitionKey, data: agg.data, explicitHashKey: '0' },
      ]);
      const { ShardIterator } = await context.kinesis.send(
        new GetShardIteratorCommand({ StreamName: streamName, ShardId: shardId, ShardIteratorType: 'TRIM_HORIZON' }),
      );
      const ref: ShardRef = { applicationName: uniqueName('app'), streamName, shardId };
      const reader = createShardReader({ kinesis: context.kinesis });

      // Act
      const read = await new MockActivityEnvironment().run<[], ReadBatch, () => Promise<ReadBatch>>(() =>
        reader.read(ref, ShardIterator!, { maxRecords: 100, hashKeyRange }, undefined),
      );

      // Assess
      assert.deepEqual(
        read.records.map((record) => Buffer.from(record.data).toString()),
        ['ok-1', 'ok-2'],
      );
      assert.equal(read.summary.deaggregationFailureCount, 1);
      assert.equal(read.summary.deaggregationFailures[0]?.sequenceNumber, `${put!.sequenceNumber}/1`);
      assert.match(read.summary.deaggregationFailures[0]?.error ?? '', /invalid explicit hash key.*not-a-number/);
      assert.equal(read.summary.lastSequenceNumber, put!.sequenceNumber, 'reading goes on after the aggregate');
    });
  }
});

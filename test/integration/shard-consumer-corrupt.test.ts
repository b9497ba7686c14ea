/**
 * Corrupt KPL aggregates between good records: each is skipped, counted and reported by sequence number; every good
 * record around them is delivered, in order, and the shard keeps moving.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CheckpointTable } from '../../src/checkpoint/checkpoint-table';
import { stopSignal } from '../../src/workflows/shard-consumer';
import {
  createStream,
  firstShardId,
  kclTestContextForSuite,
  putRecords,
  recordingProcessor,
  startShardConsumer,
  testWorker,
  progressWhen,
} from '../helpers/kcl';
import { aggregate, type CorruptionKind, corruptAggregate } from '../helpers/records';
import { uniqueName } from '../helpers/stack';

describe('ShardConsumerWorkflow with corrupt aggregates', () => {
  const context = kclTestContextForSuite();

  test('checksum, truncated and garbage aggregates are skipped and reported; the good records arrive in order', async () => {
    // Prepare: good plain records and good aggregates, with one corrupt aggregate of each kind between them.
    const streamName = await createStream(context.kinesis, 1);
    const applicationName = uniqueName('app');
    const taskQueue = uniqueName('tq');
    const shardId = await firstShardId(context.kinesis, streamName);
    const expected: string[] = [];
    const corruptSequenceNumbers: string[] = [];
    let lastGood = '';
    const putGood = async (texts: string[]) => {
      const record =
        texts.length === 1
          ? { partitionKey: `pk-${texts[0]}`, data: texts[0]! }
          : aggregate(texts.map((text) => ({ partitionKey: `pk-${text}`, data: text })));
      const [put] = await putRecords(context.kinesis, streamName, [record]);
      lastGood = put!.sequenceNumber;
      expected.push(...texts);
    };
    const putCorrupt = async (kind: CorruptionKind) => {
      const [put] = await putRecords(context.kinesis, streamName, [
        { partitionKey: `pk-${kind}`, data: corruptAggregate(kind) },
      ]);
      corruptSequenceNumbers.push(put!.sequenceNumber);
    };
    await putGood(['g0']);
    await putGood(['g1a', 'g1b', 'g1c']);
    await putCorrupt('checksum');
    await putGood(['g2']);
    await putCorrupt('truncated');
    await putGood(['g3a', 'g3b']);
    await putGood(['g4']);
    await putCorrupt('garbage');
    await putGood(['g5']);
    const { factory, recording } = recordingProcessor();
    const worker = await testWorker(context, { processors: { recorder: factory }, taskQueue });

    // Act
    const { progress, result } = await worker.runUntil(
      (async () => {
        const handle = await startShardConsumer(context, {
          taskQueue,
          applicationName,
          streamName,
          shardId,
          processor: 'recorder',
          options: { initialPosition: 'TRIM_HORIZON', maxRecords: 2, idleTimeBetweenReadsMs: 200 },
        });
        await recording.until((r) => r.records.length >= expected.length);
        const progress = await progressWhen(
          handle,
          (p) => p.counters.deaggregationFailures >= 3 && p.counters.recordsProcessed >= expected.length,
        );
        await handle.signal(stopSignal);
        return { progress, result: await handle.result() };
      })(),
    );

    // Assess
    assert.deepEqual(
      recording.records.map((r) => r.text),
      expected,
    );
    assert.ok(
      recording.records.every((r) => !r.text.includes('damaged aggregate')),
      'no user record of a corrupt aggregate was delivered',
    );
    assert.deepEqual(
      progress.recentDeaggregationFailures.map((f) => f.sequenceNumber),
      corruptSequenceNumbers,
    );
    assert.ok(
      progress.recentDeaggregationFailures.every((f) => f.error.length > 0),
      'every failure says why',
    );
    assert.equal(progress.counters.deaggregationFailures, 3);
    assert.equal(progress.counters.recordsProcessed, expected.length);
    assert.equal(result.counters.deaggregationFailures, 3);
    const lease = await new CheckpointTable({ dynamoDb: context.dynamoDb, tableName: applicationName }).getLease(
      shardId,
    );
    assert.deepEqual(lease?.checkpoint, { sequenceNumber: lastGood, subSequenceNumber: 0 });
  });
});

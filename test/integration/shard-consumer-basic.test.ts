import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CheckpointTable } from '../../src/checkpoint/checkpoint-table';
import { progressQuery, stopSignal } from '../../src/workflows/shard-consumer';
import {
  createStream,
  kclTestContextForSuite,
  listShards,
  putRecords,
  recordingProcessor,
  startShardConsumer,
  testWorker,
} from '../helpers/kcl';
import { aggregate } from '../helpers/records';
import { uniqueName } from '../helpers/stack';

describe('ShardConsumerWorkflow on the real local stack', () => {
  const context = kclTestContextForSuite();

  test('plain and KPL-aggregated records mixed: every record delivered once, in order; stop ends in shutdown(REQUESTED)', async () => {
    const streamName = await createStream(context.kinesis, 1);
    const applicationName = uniqueName('app');
    const taskQueue = uniqueName('tq');
    const { factory, recording } = recordingProcessor();
    const worker = await testWorker(context, { processors: { recorder: factory }, taskQueue });

    const expected: string[] = [];
    const puts: { partitionKey: string; data: Uint8Array | string }[] = [];
    for (let i = 0; i < 30; i++) {
      if (i % 3 === 0) {
        const users = [0, 1, 2, 3].map((j) => ({ partitionKey: `pk-${i}-${j}`, data: `agg-${i}-${j}` }));
        const agg = aggregate(users);
        puts.push({ partitionKey: agg.partitionKey, data: agg.data });
        expected.push(...users.map((u) => u.data));
      } else {
        puts.push({ partitionKey: `pk-${i}`, data: `plain-${i}` });
        expected.push(`plain-${i}`);
      }
    }
    await putRecords(context.kinesis, streamName, puts);
    const shardId = (await listShards(context.kinesis, streamName))[0]?.ShardId ?? '';

    await worker.runUntil(
      (async () => {
        const handle = await startShardConsumer(context, {
          taskQueue,
          applicationName,
          streamName,
          shardId,
          processor: 'recorder',
          options: { initialPosition: 'TRIM_HORIZON', maxRecords: 7, idleTimeBetweenReadsMs: 200 },
        });
        await recording.until((r) => r.records.length >= expected.length);
        const progress = await handle.query(progressQuery);
        assert.equal(progress.state, 'PROCESSING');
        assert.equal(progress.shardId, shardId);
        await handle.signal(stopSignal);
        const result = await handle.result();
        assert.equal(result.reason, 'REQUESTED');
        assert.equal(result.counters.recordsProcessed, expected.length);
      })(),
    );

    assert.deepEqual(
      recording.records.map((r) => r.text),
      expected,
    );
    const aggregated = recording.records.filter((r) => r.text.startsWith('agg-'));
    assert.deepEqual(
      aggregated.slice(0, 4).map((r) => r.subSequenceNumber),
      [0, 1, 2, 3],
    );
    assert.deepEqual(
      recording.shutdowns.map((s) => s.reason),
      ['REQUESTED'],
    );
    const table = new CheckpointTable({ dynamoDb: context.dynamoDb, tableName: applicationName });
    const lease = await table.getLease(shardId);
    const last = recording.records.at(-1);
    assert.deepEqual(lease?.checkpoint, {
      sequenceNumber: last?.sequenceNumber,
      subSequenceNumber: last?.subSequenceNumber ?? 0,
    });
  });
});

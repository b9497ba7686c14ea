/**
 * ShardConsumerWorkflow recovering from failures: expired iterators, throttling, a pinned worker that is gone or lost
 * its processor, and a batch lost from a worker's memory. Stubbed activities on Temporal's time-skipping test server.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { createTimeSkippingEnv } from '../helpers/temporal-servers';
import { type CheckpointPolicy, positionsOf, sequenceNumberAt, stubScenario } from '../helpers/stub-activities';

const SHARD = 'shardId-000000000009';

let env: TestWorkflowEnvironment;
before(async () => {
  env = await createTimeSkippingEnv();
});
after(async () => {
  await env?.teardown();
});

const position = (index: number) => ({ sequenceNumber: sequenceNumberAt(index) });
/** The processor checkpoints the last record of its first batch only. */
const checkpointFirstBatchOnly: CheckpointPolicy = (batch, nth) => (nth === 1 ? batch.at(-1) : undefined);

describe('reading recovers', () => {
  test('an expired iterator is replaced AFTER the last record processed (not at the older checkpoint): nothing skipped or repeated', async () => {
    const scenario = stubScenario(env, 'expired', { checkpointPolicy: checkpointFirstBatchOnly });
    const { fake } = scenario;
    const shard = fake.addShard(SHARD);
    shard.append(10);
    shard.close([]);
    let expired = false;
    fake.hooks.getRecords = (input) => {
      if (shard.indexOf(input.iterator) === 6 && !expired) {
        expired = true;
        throw ApplicationFailure.nonRetryable('Iterator expired', 'ExpiredIterator');
      }
    };

    const result = await scenario.run(scenario.input(SHARD, { initialPosition: 'TRIM_HORIZON', maxRecords: 3 }));

    assert.equal(result.reason, 'TERMINATE');
    assert.ok(expired);
    assert.deepEqual(fake.leases.positions(SHARD).slice(0, 1), [sequenceNumberAt(2)], 'the checkpoint is older');
    assert.deepEqual(
      fake.callsOf('getShardIterator').map((call) => call.input.position),
      [{ type: 'TRIM_HORIZON' }, { type: 'AFTER_SEQUENCE_NUMBER', sequenceNumber: sequenceNumberAt(5) }],
    );
    assert.deepEqual(fake.delivered(), positionsOf(shard), 'every record once, in order');
    assert.equal(fake.count('initializeProcessor'), 1, 'the shard stays where it is');
    assert.equal(result.counters.expiredIterators, 1);
  });

  test('throttled reads are retried with growing backoff; the batch is delivered once', async () => {
    const scenario = stubScenario(env, 'throttled');
    const { fake } = scenario;
    const shard = fake.addShard(SHARD);
    shard.append(4);
    shard.close([]);
    const throttles = 4;
    // Server (workflow) time when each attempt runs. (The test server stamps an attempt's scheduled time when the
    // previous one failed, before the backoff, so `currentAttemptScheduledTimestampMs` would lag one attempt behind.)
    const ranAt: number[] = [];
    fake.hooks.getRecords = async (_input, call) => {
      ranAt.push(await env.currentTimeMs());
      if (call.nth <= throttles) throw ApplicationFailure.retryable('Rate exceeded for shard', 'Throttled');
    };

    const result = await scenario.run(scenario.input(SHARD, { initialPosition: 'TRIM_HORIZON' }));

    assert.equal(result.reason, 'TERMINATE');
    const reads = fake.callsOf('getRecords');
    assert.deepEqual(
      reads.map((read) => read.attempt),
      [1, 2, 3, 4, 5],
      'one activity, retried by its policy',
    );
    assert.equal(new Set(reads.map((read) => read.input.iterator)).size, 1, 'every attempt reads the same iterator');
    const waits = ranAt.slice(1).map((time, i) => time - ranAt[i]!);
    // READ_RETRY: from 200 ms, doubling.
    [200, 400, 800, 1600].forEach((backoff, i) =>
      assert.ok(waits[i]! >= backoff, `attempt ${i + 2} ran ${waits[i]} ms after the previous one`),
    );
    for (let i = 1; i < waits.length; i++) assert.ok(waits[i]! > waits[i - 1]!, `backoff grows: ${waits.join(', ')}`);
    assert.deepEqual(
      fake.deliveries.map((delivery) => delivery.records.length),
      [4],
    );
    assert.deepEqual(fake.delivered(), positionsOf(shard));
    assert.equal(result.counters.batches, 1);
  });
});

describe('a pinned worker that is gone', () => {
  test('nobody polls the pinned queue: schedule-to-start timeout, re-pin, resume from the durable checkpoint', async () => {
    const scenario = stubScenario(env, 'worker-gone');
    const { fake } = scenario;
    const shard = fake.addShard(SHARD);
    shard.append(8);
    shard.close([]);
    fake.leases.put({ shardId: SHARD, owner: 'earlier-worker', counter: 3, checkpoint: position(2) });
    const goneQueue = `${scenario.taskQueue}@gone-worker`;
    fake.hooks.initializeProcessor = (_input, call) => (call.nth === 1 ? { workerQueue: goneQueue } : undefined);

    const result = await scenario.run(scenario.input(SHARD, { workerScheduleToStartTimeoutMs: 1_000, maxRecords: 3 }));

    assert.equal(result.reason, 'TERMINATE');
    const pins = fake.callsOf('initializeProcessor');
    assert.deepEqual(
      pins.map((call) => call.input.pin),
      [`${scenario.owner()}/1`, `${scenario.owner()}/2`],
    );
    assert.deepEqual(pins[1]?.input.startingPosition, position(2));
    assert.ok(
      pins[1].scheduledAtMs - pins[0]!.scheduledAtMs >= 1_000,
      'the shard moved after workerScheduleToStartTimeoutMs of workflow time',
    );
    // Every read the stubs saw ran on the new worker (the one on the gone queue never started).
    const reads = fake.callsOf('getRecords');
    assert.ok(reads.every((read) => read.taskQueue === fake.pinnedQueue));
    assert.deepEqual(reads[0]?.input.skipUntil, { ...position(2), subSequenceNumber: 0 });
    assert.deepEqual(
      fake.callsOf('getShardIterator').map((call) => call.input.position),
      [
        { type: 'AT_SEQUENCE_NUMBER', sequenceNumber: sequenceNumberAt(2) },
        { type: 'AT_SEQUENCE_NUMBER', sequenceNumber: sequenceNumberAt(2) },
      ],
    );
    assert.deepEqual(fake.delivered(), positionsOf(shard, 3), 'from the record after the checkpoint, nothing before');
    assert.ok(fake.deliveries.every((delivery) => delivery.pin === `${scenario.owner()}/2`));
    assert.equal(result.counters.workerMoves, 1);
  });

  test('ProcessorLost mid-stream: re-pin, and records after the durable checkpoint are delivered again, none before', async () => {
    const scenario = stubScenario(env, 'processor-lost', { checkpointPolicy: checkpointFirstBatchOnly });
    const { fake } = scenario;
    const shard = fake.addShard(SHARD);
    shard.append(12);
    shard.close([]);
    fake.hooks.processRecords = (input, call) => {
      if (call.nth === 3) fake.instances.delete(input.pin); // the worker restarted: its processor is gone
    };

    const result = await scenario.run(scenario.input(SHARD, { initialPosition: 'TRIM_HORIZON', maxRecords: 3 }));

    assert.equal(result.reason, 'TERMINATE');
    const lost = fake.callsOf('processRecords')[2];
    assert.equal((lost?.error as { type?: string } | undefined)?.type, 'ProcessorLost');
    const pins = fake.callsOf('initializeProcessor');
    assert.equal(pins.length, 2);
    assert.deepEqual(pins[1]?.input.startingPosition, position(2));
    assert.deepEqual(fake.callsOf('getShardIterator').at(-1)?.input.position, {
      type: 'AT_SEQUENCE_NUMBER',
      sequenceNumber: sequenceNumberAt(2),
    });
    // Batches 1 and 2 on the first instance; after the move, from record 3 (after the checkpoint at 2) on the second.
    const byInstance = (suffix: string) =>
      fake.deliveries
        .filter((delivery) => delivery.pin.endsWith(suffix))
        .flatMap((delivery) => delivery.records.map((record) => record.sequenceNumber));
    assert.deepEqual(byInstance('/1'), positionsOf(shard, 0, 6));
    assert.deepEqual(byInstance('/2'), positionsOf(shard, 3));
    const firstReadAfterMove = fake.callsOf('getRecords').find((read) => read.startTick > pins[1]!.endTick!);
    assert.deepEqual(firstReadAfterMove?.input.skipUntil, { ...position(2), subSequenceNumber: 0 });
    assert.equal(result.counters.workerMoves, 1);
  });

  test('BatchLost: the same position is read again on the same worker, nothing skipped or repeated', async () => {
    const scenario = stubScenario(env, 'batch-lost');
    const { fake } = scenario;
    const shard = fake.addShard(SHARD);
    shard.append(9);
    shard.close([]);
    fake.hooks.processRecords = (input, call) => {
      if (call.nth === 2) fake.batches.delete(input.handle); // evicted from the worker's memory
    };

    const result = await scenario.run(scenario.input(SHARD, { initialPosition: 'TRIM_HORIZON', maxRecords: 3 }));

    assert.equal(result.reason, 'TERMINATE');
    const lost = fake.callsOf('processRecords')[1];
    assert.equal((lost?.error as { type?: string } | undefined)?.type, 'BatchLost');
    assert.equal(fake.count('initializeProcessor'), 1, 'no re-pin');
    assert.equal(fake.count('getShardIterator'), 1, 'the iterator is still good');
    // Reads: 0, 3, the prefetch of 6 (discarded with the lost batch), then 3 again and 6 again.
    const readsOfLostBatch = fake.callsOf('getRecords').filter((read) => shard.indexOf(read.input.iterator) === 3);
    assert.equal(readsOfLostBatch.length, 2, 'the lost batch is read again');
    assert.ok(readsOfLostBatch[1]!.startTick > lost!.endTick!);
    assert.deepEqual(
      fake
        .callsOf('getRecords')
        .map((read) => shard.indexOf(read.input.iterator))
        .sort((a, b) => a - b),
      [0, 3, 3, 6, 6],
    );
    assert.deepEqual(fake.delivered(), positionsOf(shard), 'every record once, in order');
    assert.deepEqual(fake.leases.positions(SHARD), [
      sequenceNumberAt(2),
      sequenceNumberAt(5),
      sequenceNumberAt(8),
      'SHARD_END',
    ]);
  });
});

/**
 * Planned moves of a shard (the `moveShard` signal the stream consumer's placement sends) and the per-worker cap: the
 * old processor gets shutdown(REQUESTED) on its worker, the target initializes at the checkpoint it wrote, nothing is
 * delivered twice; a target that cannot take the shard falls back to any worker; with every worker full the shard
 * waits (WAITING_FOR_WORKER) until a move names a worker with room. Stubbed activities on the time-skipping server.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { ConsumerState } from '../../src/consumer-types';
import { FailureType } from '../../src/failure-types';
import { moveShardSignal, progressQuery, stopSignal } from '../../src/workflows/shard-consumer';
import { createTimeSkippingEnv } from '../helpers/temporal-servers';
import { neverCheckpoint, positionsOf, stubScenario } from '../helpers/stub-activities';

const SHARD = 'shardId-000000000003';

let env: TestWorkflowEnvironment;
before(async () => {
  env = await createTimeSkippingEnv();
});
after(async () => {
  await env?.teardown();
});

describe('a planned move (moveShard)', () => {
  test('mid-stream: shutdown(REQUESTED) on the old worker, then initialize with a lease renewal on the target; every record once', async () => {
    const name = 'handoff';
    const scenario = stubScenario(env, name, { checkpointPolicy: neverCheckpoint, checkpointOnShutdown: true });
    const { fake } = scenario;
    const target = `${scenario.taskQueue}@second-worker`;
    fake.otherWorkers.push(target);
    const shard = fake.addShard(SHARD);
    shard.append(6);

    const result = await scenario.run(
      scenario.input(SHARD, { initialPosition: 'TRIM_HORIZON', maxRecords: 3, idleTimeBetweenReadsMs: 50 }),
      async (handle) => {
        await fake.until(() => fake.deliveries.length >= 2, 10_000, 'the first two batches');
        await handle.signal(moveShardSignal, { to: target, reason: 'BALANCE', seq: 1 });
        await fake.until(
          () => fake.callsOf('initializeProcessor').some((c) => c.taskQueue === target && c.result !== undefined),
          10_000,
          'the processor on the target',
        );
        shard.append(6);
        await fake.until(() => fake.delivered().length === 12, 10_000, 'all 12 records');
        const progress = await handle.query(progressQuery);
        assert.equal(progress.worker, target);
        assert.equal(progress.counters.handoffs, 1);
        await handle.signal(stopSignal);
      },
    );

    assert.equal(result.reason, 'REQUESTED');
    assert.deepEqual(fake.delivered(), positionsOf(shard), 'every record exactly once, in order');
    const [first, second] = fake.callsOf('initializeProcessor');
    assert.equal(first?.taskQueue, scenario.taskQueue, 'the first pin: any worker (shared queue)');
    assert.equal(second?.taskQueue, target, 'the move: on the target worker’s own queue');
    assert.equal(second?.input.lease?.renew, true, 'the target renews the lease (fencing the old pin)');
    assert.deepEqual(
      fake.shutdowns.map((s) => [s.pin, s.reason, s.taskQueue]),
      [
        [first.input.pin, 'REQUESTED', fake.pinnedQueue],
        [second.input.pin, 'REQUESTED', target],
      ],
      'the old processor got shutdown(REQUESTED) on its own worker (working checkpointer), never ZOMBIE',
    );
    assert.equal(result.counters.workerMoves, 0, 'a planned move is not a failover');
  });

  test('a target that does not answer: the shard falls back to any worker after workerScheduleToStartTimeoutMs', async () => {
    const scenario = stubScenario(env, 'handoff-gone-target', { checkpointOnShutdown: true });
    const { fake } = scenario;
    const shard = fake.addShard(SHARD);
    shard.append(4);
    const gone = `${scenario.taskQueue}@nobody-polls`;

    const result = await scenario.run(
      scenario.input(SHARD, { initialPosition: 'TRIM_HORIZON', maxRecords: 2, workerScheduleToStartTimeoutMs: 1_000 }),
      async (handle) => {
        await fake.until(() => fake.deliveries.length >= 1, 10_000, 'a first batch');
        await handle.signal(moveShardSignal, { to: gone, reason: 'BALANCE', seq: 1 });
        await fake.until(() => fake.count('initializeProcessor') >= 2, 20_000, 'a second pin');
        await fake.until(() => fake.delivered().length === 4, 20_000, 'all records');
        await handle.signal(stopSignal);
      },
    );

    assert.equal(result.reason, 'REQUESTED');
    assert.deepEqual(fake.delivered(), positionsOf(shard), 'every record once');
    assert.deepEqual(
      fake.callsOf('initializeProcessor').map((c) => c.taskQueue),
      [scenario.taskQueue, scenario.taskQueue],
      'the stubs saw no initialize on the gone queue; the fallback ran on the shared queue',
    );
  });
});

describe('maxShardsPerWorker: every worker full', () => {
  test('WAITING_FOR_WORKER until a move names a worker with room; the waiting shard then starts at its checkpoint', async () => {
    const scenario = stubScenario(env, 'waiting-for-worker');
    const { fake } = scenario;
    const roomy = `${scenario.taskQueue}@roomy-worker`;
    fake.otherWorkers.push(roomy);
    const shard = fake.addShard(SHARD);
    shard.append(3);
    shard.close([]);
    fake.hooks.initializeProcessor = (_input, call) => {
      if (call.taskQueue === scenario.taskQueue) {
        throw ApplicationFailure.create({
          type: FailureType.WorkerFull,
          message: 'this worker holds 4 shards, its maximum',
          nonRetryable: true,
        });
      }
    };

    const result = await scenario.run(
      scenario.input(SHARD, { initialPosition: 'TRIM_HORIZON' }),
      async (handle) => {
        await fake.until(() => fake.count('initializeProcessor') >= 1, 10_000, 'a refused pin');
        let progress = await handle.query(progressQuery);
        for (let i = 0; i < 50 && progress.state !== ConsumerState.WAITING_FOR_WORKER; i++) {
          await new Promise((resolve) => setTimeout(resolve, 100));
          progress = await handle.query(progressQuery);
        }
        assert.equal(progress.state, ConsumerState.WAITING_FOR_WORKER);
        assert.equal(fake.deliveries.length, 0);
        await handle.signal(moveShardSignal, { to: roomy, reason: 'CAPACITY', seq: 1 });
      },
    );

    assert.equal(result.reason, 'TERMINATE');
    assert.deepEqual(fake.delivered(), positionsOf(shard));
    assert.ok(fake.deliveries.every((d) => d.taskQueue === roomy), 'processed on the worker with room');
  });

  test('a stop while waiting for a worker ends the consumer (REQUESTED) without a pin', async () => {
    const scenario = stubScenario(env, 'waiting-stop');
    const { fake } = scenario;
    const shard = fake.addShard(SHARD);
    shard.append(3);
    let refuse = true;
    fake.hooks.initializeProcessor = () => {
      if (refuse) {
        throw ApplicationFailure.create({ type: FailureType.WorkerFull, message: 'full', nonRetryable: true });
      }
    };

    const result = await scenario.run(scenario.input(SHARD, { initialPosition: 'TRIM_HORIZON' }), async (handle) => {
      await fake.until(() => fake.count('initializeProcessor') >= 1, 10_000, 'a refused pin');
      await handle.signal(stopSignal);
      refuse = false;
    });

    assert.equal(result.reason, 'REQUESTED');
    assert.equal(fake.deliveries.length, 0);
    const shutdowns = fake.callsOf('shutdownProcessor');
    assert.equal(shutdowns.length, 1, 'the processor still gets its shutdown call');
    assert.equal(shutdowns[0]?.taskQueue, scenario.taskQueue, 'on any worker (shared queue)');
  });
});

/**
 * ShardConsumerWorkflow's read → process → checkpoint loop: idling, prefetch, checkpoints, stop, shard end, lost
 * leases, continue-as-new and the progress query. Stubbed activities on Temporal's time-skipping test server.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { WorkflowHandle, WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { optionalTsToMs } from '@temporalio/common/lib/time';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { ChildShard } from '../../src/consumer-types';
import { DEFAULT_SHARD_WORKFLOW_TASK_TIMEOUT_MS } from '../../src/options';
import { SentinelCheckpoint } from '../../src/positions';
import { progressQuery, type shardConsumerWorkflow, stopSignal } from '../../src/workflows/shard-consumer';
import { createTimeSkippingEnv } from '../helpers/temporal-servers';
import {
  type ActivityCall,
  type CheckpointPolicy,
  neverCheckpoint,
  positionsOf,
  sequenceNumberAt,
  stubScenario,
} from '../helpers/stub-activities';

const SHARD = 'shardId-000000000003';
const IDLE_MS = 30_000;

let env: TestWorkflowEnvironment;
before(async () => {
  env = await createTimeSkippingEnv();
});
after(async () => {
  await env?.teardown();
});

/** Workflow-time gaps between consecutive calls. */
function gaps(calls: ActivityCall[]): number[] {
  return calls.slice(1).map((call, i) => call.scheduledAtMs - calls[i]!.scheduledAtMs);
}

type History = Awaited<ReturnType<WorkflowHandle['fetchHistory']>>;

const position = (index: number) => ({ sequenceNumber: sequenceNumberAt(index) });

describe('idling between reads', () => {
  for (const callEvenForEmpty of [false, true]) {
    test(`an empty read at the tip: the next reads wait on the worker, 2x idleTimeBetweenReadsMs doubling up to maxIdleWaitMs, with no workflow timer (callProcessRecordsEvenForEmptyRecordList ${callEvenForEmpty})`, async () => {
      const scenario = stubScenario(env, 'idle-at-tip');
      const { fake } = scenario;
      const shard = fake.addShard(SHARD); // empty and open: reads return nothing, 0 ms behind the tip
      fake.hooks.getRecords = (_input, call) => {
        if (call.nth !== 5) return;
        shard.append(2);
        shard.close([]);
      };
      let handle: WorkflowHandleWithFirstExecutionRunId<typeof shardConsumerWorkflow> | undefined;

      const result = await scenario.run(
        scenario.input(SHARD, {
          initialPosition: 'TRIM_HORIZON',
          idleTimeBetweenReadsMs: 1_000,
          maxIdleWaitMs: 6_000,
          callProcessRecordsEvenForEmptyRecordList: callEvenForEmpty,
        }),
        async (started) => {
          handle = started;
        },
      );

      assert.equal(result.reason, 'TERMINATE');
      const reads = fake.callsOf('getRecords');
      assert.deepEqual(
        reads.map((read) => read.input.idleWaitMs),
        [undefined, 2_000, 4_000, 6_000, 6_000],
        'an active read returns at once; quiet reads wait 2 s, 4 s, then maxIdleWaitMs',
      );
      assert.ok(reads.every((read) => read.input.idlePollMs === 1_000));
      const history = await handle!.fetchHistory();
      assert.equal(
        (history.events ?? []).filter((event) => event.timerStartedEventAttributes).length,
        0,
        'no workflow timer while the shard is quiet',
      );
      assert.deepEqual(
        fake.deliveries.map((delivery) => delivery.records.length),
        callEvenForEmpty ? [0, 0, 0, 0, 2] : [2],
      );
      assert.deepEqual(fake.delivered(), positionsOf(shard));
      assert.equal(result.counters.emptyBatches, 4);
      assert.equal(result.counters.batches, 5);
    });
  }

  test('an empty read at least idleTimeBetweenReadsMs behind the tip reads again at once', async () => {
    const scenario = stubScenario(env, 'idle-behind');
    const { fake } = scenario;
    const shard = fake.addShard(SHARD);
    shard.millisBehindLatest = () => IDLE_MS; // not below the idle time: no pause
    fake.hooks.getRecords = (_input, call) => {
      if (call.nth !== 3) return;
      shard.append(2);
      shard.close([]);
    };

    await scenario.run(
      scenario.input(SHARD, { initialPosition: 'TRIM_HORIZON', idleTimeBetweenReadsMs: IDLE_MS, prefetch: false }),
    );

    const reads = fake.callsOf('getRecords');
    assert.equal(reads.length, 3);
    for (const gap of gaps(reads)) assert.ok(gap < 5_000, `reads ${gap} ms apart`);
    assert.equal(fake.count('processRecords'), 1, 'empty batches are not delivered by default');
  });

  test('a read that returned records reads again at once, even at the tip', async () => {
    const scenario = stubScenario(env, 'no-idle');
    const { fake } = scenario;
    const shard = fake.addShard(SHARD);
    shard.append(6);
    shard.close([]);
    shard.millisBehindLatest = () => 0;

    await scenario.run(
      scenario.input(SHARD, {
        initialPosition: 'TRIM_HORIZON',
        maxRecords: 2,
        idleTimeBetweenReadsMs: IDLE_MS,
        prefetch: false,
      }),
    );

    const reads = fake.callsOf('getRecords');
    assert.equal(reads.length, 3);
    for (const gap of gaps(reads)) assert.ok(gap < 5_000, `reads ${gap} ms apart`);
    assert.deepEqual(fake.delivered(), positionsOf(shard));
  });
});

describe('prefetch', () => {
  for (const prefetch of [true, false]) {
    test(`prefetch ${prefetch ? 'on: the next read runs while a batch is processed' : 'off: strictly read, process, read'}; delivery order is the same`, async () => {
      const scenario = stubScenario(env, `prefetch-${prefetch}`);
      const { fake } = scenario;
      const shard = fake.addShard(SHARD);
      shard.append(8);
      shard.close([]);
      // Each batch but the last is processed until the next read has started (or a while has passed without one).
      fake.hooks.processRecords = async (_input, call) => {
        if (call.nth < 4) {
          await fake.until(() => fake.count('getRecords') > call.nth, prefetch ? 3_000 : 300).catch(() => undefined);
        }
      };

      await scenario.run(scenario.input(SHARD, { initialPosition: 'TRIM_HORIZON', maxRecords: 2, prefetch }));

      const reads = fake.callsOf('getRecords');
      const batches = fake.callsOf('processRecords');
      assert.equal(reads.length, 4);
      assert.equal(batches.length, 4);
      for (let i = 0; i < 3; i++) {
        const nextRead = reads[i + 1]!;
        const processing = batches[i]!;
        if (prefetch) {
          assert.ok(
            nextRead.startTick < processing.endTick!,
            `read ${i + 2} started while batch ${i + 1} was processed`,
          );
        } else {
          assert.ok(
            nextRead.startTick > processing.endTick!,
            `read ${i + 2} started after batch ${i + 1} was processed`,
          );
        }
      }
      if (!prefetch) {
        assert.deepEqual(fake.order(['getRecords', 'processRecords']), [
          'getRecords',
          'processRecords',
          'getRecords',
          'processRecords',
          'getRecords',
          'processRecords',
          'getRecords',
          'processRecords',
        ]);
      }
      assert.deepEqual(
        reads.map((read) => shard.indexOf(read.input.iterator)),
        [0, 2, 4, 6],
      );
      assert.deepEqual(fake.delivered(), positionsOf(shard));
    });
  }
});

describe('checkpoints', () => {
  test('a checkpoint asked for in processRecords is written (fenced) before the next batch is delivered', async () => {
    const policy: CheckpointPolicy = (batch, nth) => (nth === 1 ? batch[0] : nth === 2 ? batch.at(-1) : undefined);
    const scenario = stubScenario(env, 'checkpoint-order', { checkpointPolicy: policy });
    const { fake } = scenario;
    const shard = fake.addShard(SHARD);
    shard.append(9);
    shard.close([]);

    const result = await scenario.run(scenario.input(SHARD, { initialPosition: 'TRIM_HORIZON', maxRecords: 3 }));

    // Written on the worker, inside processRecords (durable when checkpoint() resolves): no workflow-side write.
    assert.equal(fake.count('checkpoint'), 0);
    const [first, second, third] = fake.callsOf('processRecords');
    assert.deepEqual(
      [first, second, third].map((call) => (call!.result as { checkpoint?: unknown }).checkpoint),
      [position(0), position(5), undefined],
    );
    assert.deepEqual(
      fake.leases.written.map((write) => [write.checkpoint, write.counter, write.owner]),
      [
        [position(0), 1, scenario.owner()],
        [position(5), 2, scenario.owner()],
        [SentinelCheckpoint.SHARD_END, 3, scenario.owner()],
      ],
    );
    // Each next batch was told the counter the previous write reached.
    assert.deepEqual(
      fake.callsOf('processRecords').map((call) => call.input.lease.counter),
      [1, 2, 3],
    );
    // Each batch is told the durable checkpoint and the last record before it.
    assert.deepEqual(
      fake.callsOf('processRecords').map((call) => [call.input.lastCheckpoint, call.input.lastProcessed]),
      [
        [undefined, undefined],
        [position(0), position(2)],
        [position(5), position(5)],
      ],
    );
    assert.deepEqual(fake.leases.positions(SHARD), [sequenceNumberAt(0), sequenceNumberAt(5), 'SHARD_END']);
    assert.equal(result.counters.checkpoints, 3);
  });

  test('a lost lease (fenced checkpoint fails with CheckpointConflict) ends ZOMBIE: shutdown(ZOMBIE), nothing more written', async () => {
    const scenario = stubScenario(env, 'zombie');
    const { fake } = scenario;
    const shard = fake.addShard(SHARD);
    shard.append(8);
    fake.hooks.processRecords = (_input, call) => {
      if (call.nth === 2) fake.leases.steal(SHARD, 'another-worker'); // another worker takes the shard meanwhile
    };

    const result = await scenario.run(scenario.input(SHARD, { initialPosition: 'TRIM_HORIZON', maxRecords: 2 }));

    assert.equal(result.reason, 'ZOMBIE');
    const attempts = fake.callsOf('processRecords');
    assert.equal(attempts.length, 2, 'the conflict is not retried and nothing is written after it');
    assert.equal((attempts[1]!.error as { type?: string }).type, 'CheckpointConflict');
    assert.deepEqual(fake.leases.positions(SHARD), [sequenceNumberAt(1)]);
    assert.deepEqual(fake.leases.conflicts, [{ shardId: SHARD, owner: scenario.owner(), counter: 2 }]);
    const shutdowns = fake.callsOf('shutdownProcessor');
    assert.deepEqual(
      shutdowns.map((call) => call.input.reason),
      ['ZOMBIE'],
    );
    assert.equal(fake.count('releaseLease'), 0, "the lease is someone else's now");
    assert.equal(fake.leases.get(SHARD)?.owner, 'another-worker');
    assert.deepEqual(result.checkpoint, position(1));
  });
});

describe('ending', () => {
  test('stop: shutdown(REQUESTED) on the pinned worker, its checkpoint written fenced, lease released, result REQUESTED', async () => {
    const scenario = stubScenario(env, 'stop', { checkpointPolicy: neverCheckpoint, checkpointOnShutdown: true });
    const { fake } = scenario;
    const shard = fake.addShard(SHARD);
    shard.append(4);
    let handle: WorkflowHandleWithFirstExecutionRunId<typeof shardConsumerWorkflow> | undefined;

    const result = await scenario.run(
      scenario.input(SHARD, { initialPosition: 'TRIM_HORIZON', maxRecords: 2 }),
      async (started) => {
        handle = started;
        await fake.until(() => fake.delivered().length === 4, 10_000, 'four records');
        await started.signal(stopSignal);
      },
    );

    assert.equal(result.reason, 'REQUESTED');
    assert.deepEqual(result.checkpoint, position(3));
    const [shutdown, ...more] = fake.callsOf('shutdownProcessor');
    assert.equal(more.length, 0);
    assert.equal(shutdown?.input.reason, 'REQUESTED');
    assert.deepEqual(shutdown.input.lastProcessed, position(3));
    assert.equal(shutdown.input.pin, fake.callsOf('initializeProcessor')[0]?.input.pin);
    assert.equal(shutdown.taskQueue, fake.pinnedQueue);
    assert.deepEqual(fake.leases.written, [
      { shardId: SHARD, owner: scenario.owner(), counter: 1, checkpoint: position(3) },
    ]);
    // Written by the shutdown call on the worker (durable before shutdown returned), then the lease is released.
    assert.deepEqual(fake.order(['shutdownProcessor', 'checkpoint', 'releaseLease']), [
      'shutdownProcessor',
      'releaseLease',
    ]);
    assert.equal(shutdown.taskQueue, fake.pinnedQueue);
    assert.equal(fake.callsOf('releaseLease')[0]?.input.counter, 2, 'released with the counter of the last write');
    assert.equal(fake.leases.get(SHARD)?.owner, undefined, 'the lease has no owner any more');
    assert.deepEqual(fake.delivered(), positionsOf(shard));
    assert.equal((await handle!.describe()).status.name, 'COMPLETED');
  });

  test('shard end: last batch processed, shutdown(TERMINATE), then SHARD_END with the children written, result TERMINATE', async () => {
    const scenario = stubScenario(env, 'shard-end', { checkpointPolicy: neverCheckpoint, checkpointOnShutdown: true });
    const { fake } = scenario;
    const shard = fake.addShard(SHARD);
    shard.append(5);
    const children: ChildShard[] = [
      { shardId: 'shardId-000000000004', parentShardIds: [SHARD] },
      { shardId: 'shardId-000000000005', parentShardIds: [SHARD] },
    ];
    shard.close(children);

    const result = await scenario.run(scenario.input(SHARD, { initialPosition: 'TRIM_HORIZON', maxRecords: 2 }));

    assert.equal(result.reason, 'TERMINATE');
    assert.deepEqual(result.childShards, children);
    assert.equal(result.checkpoint, SentinelCheckpoint.SHARD_END);
    assert.deepEqual(fake.delivered(), positionsOf(shard));
    assert.deepEqual(fake.deliveries.at(-1)?.records, [position(4)], 'the batch that ended the shard was processed');
    assert.deepEqual(fake.order(['processRecords', 'shutdownProcessor', 'checkpoint', 'releaseLease']).slice(-3), [
      'processRecords',
      'shutdownProcessor',
      'releaseLease',
    ]);
    assert.deepEqual(fake.callsOf('shutdownProcessor')[0]?.input.shardEnd, {
      childShardIds: children.map((child) => child.shardId),
    });
    const shutdown = fake.callsOf('shutdownProcessor')[0];
    assert.equal(shutdown?.input.reason, 'TERMINATE');
    assert.deepEqual(shutdown.input.lastProcessed, position(4));
    assert.deepEqual(fake.leases.written, [
      { shardId: SHARD, owner: scenario.owner(), counter: 1, checkpoint: position(4) },
      {
        shardId: SHARD,
        owner: scenario.owner(),
        counter: 2,
        checkpoint: SentinelCheckpoint.SHARD_END,
        childShardIds: children.map((child) => child.shardId),
      },
    ]);
    // Reads, batches and shutdown ran on the pinned worker; the rest on the workflow's queue.
    for (const call of fake.calls) {
      const pinned = ['getRecords', 'processRecords', 'shutdownProcessor'].includes(call.name);
      assert.equal(call.taskQueue, pinned ? fake.pinnedQueue : scenario.taskQueue, `${call.name} ran on its queue`);
    }
  });
});

describe('continue-as-new', () => {
  test('the cursor carries over: every record once, in order; counters and fencing continue; the pin survives; the next runs get the default workflow task timeout', async () => {
    const scenario = stubScenario(env, 'continue-as-new');
    const { fake } = scenario;
    const shard = fake.addShard(SHARD);
    shard.append(20);
    shard.close([]);
    let handle: WorkflowHandleWithFirstExecutionRunId<typeof shardConsumerWorkflow> | undefined;

    const result = await scenario.run(
      scenario.input(SHARD, { initialPosition: 'TRIM_HORIZON', maxRecords: 2, maxBatchesPerRun: 3 }),
      async (started) => {
        handle = started;
      },
    );

    assert.equal(result.reason, 'TERMINATE');
    assert.deepEqual(fake.delivered(), positionsOf(shard), 'every record exactly once, in order');
    // The chain of runs: each of the first three ends in WorkflowExecutionContinuedAsNew.
    const runs: { batches: number; continued: boolean }[] = [];
    const taskTimeouts: (number | undefined)[] = [];
    let runId: string | undefined = handle!.firstExecutionRunId;
    while (runId) {
      const history: History = await env.client.workflow.getHandle(scenario.workflowId, runId).fetchHistory();
      const events = history.events ?? [];
      const last = events.at(-1);
      runs.push({
        batches: events.filter(
          (event) => event.activityTaskScheduledEventAttributes?.activityType?.name === 'processRecords',
        ).length,
        continued: Boolean(last?.workflowExecutionContinuedAsNewEventAttributes),
      });
      taskTimeouts.push(optionalTsToMs(events[0]?.workflowExecutionStartedEventAttributes?.workflowTaskTimeout));
      runId = last?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId ?? undefined;
    }
    assert.deepEqual(runs, [
      { batches: 3, continued: true },
      { batches: 3, continued: true },
      { batches: 3, continued: true },
      { batches: 1, continued: false },
    ]);
    assert.notEqual((await handle!.describe()).runId, handle!.firstExecutionRunId);
    // Started without a workflowTaskTimeoutMs input (as before the stream consumer passed one): the runs continued as
    // new get the default, whatever the first had.
    assert.deepEqual(taskTimeouts.slice(1), [
      DEFAULT_SHARD_WORKFLOW_TASK_TIMEOUT_MS,
      DEFAULT_SHARD_WORKFLOW_TASK_TIMEOUT_MS,
      DEFAULT_SHARD_WORKFLOW_TASK_TIMEOUT_MS,
    ]);
    // The lease was claimed once and every write presents the counter the previous one returned.
    assert.equal(fake.count('claimLease'), 1);
    const writes = fake.leases.written;
    assert.deepEqual(
      writes.map((write) => write.counter),
      Array.from({ length: 11 }, (_, i) => i + 1),
    );
    assert.ok(
      writes.every((write) => write.owner === scenario.owner()),
      'one owner across runs',
    );
    // The processor was created once; every batch went to that instance.
    assert.equal(fake.count('initializeProcessor'), 1);
    const pin = fake.callsOf('initializeProcessor')[0]?.input.pin;
    assert.ok(fake.deliveries.every((delivery) => delivery.pin === pin));
    assert.equal(result.counters.batches, 10);
    assert.equal(result.counters.recordsProcessed, 20);
    assert.equal(result.counters.checkpoints, 11);
  });

  test('a workflowTaskTimeoutMs in the input is the workflow task timeout of every run continued as new', async () => {
    const scenario = stubScenario(env, 'continue-as-new-timeout');
    const shard = scenario.fake.addShard(SHARD);
    shard.append(4);
    shard.close([]);
    let handle: WorkflowHandleWithFirstExecutionRunId<typeof shardConsumerWorkflow> | undefined;

    const result = await scenario.run(
      scenario.input(
        SHARD,
        { initialPosition: 'TRIM_HORIZON', maxRecords: 2, maxBatchesPerRun: 1 },
        { workflowTaskTimeoutMs: 7_000 },
      ),
      async (started) => {
        handle = started;
      },
    );

    assert.equal(result.reason, 'TERMINATE');
    const taskTimeouts: (number | undefined)[] = [];
    let runId: string | undefined = handle!.firstExecutionRunId;
    while (runId) {
      const history: History = await env.client.workflow.getHandle(scenario.workflowId, runId).fetchHistory();
      const events = history.events ?? [];
      taskTimeouts.push(optionalTsToMs(events[0]?.workflowExecutionStartedEventAttributes?.workflowTaskTimeout));
      runId = events.at(-1)?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId ?? undefined;
    }
    assert.ok(taskTimeouts.length >= 2, `${taskTimeouts.length} runs`);
    assert.deepEqual(taskTimeouts.slice(1), Array<number>(taskTimeouts.length - 1).fill(7_000));
  });
});

describe('progress query', () => {
  test('mid-run: state, counters, last processed record, checkpoint and worker', async () => {
    const scenario = stubScenario(env, 'progress');
    const { fake } = scenario;
    const shard = fake.addShard(SHARD);
    shard.append(6);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    fake.hooks.processRecords = async (_input, call) => {
      if (call.nth === 2) await gate;
    };

    const result = await scenario.run(
      scenario.input(SHARD, { initialPosition: 'TRIM_HORIZON', maxRecords: 2 }),
      async (handle) => {
        await fake.until(() => fake.count('processRecords') === 2, 10_000, 'the second batch');
        const progress = await handle.query(progressQuery);
        release();
        assert.equal(progress.state, 'PROCESSING');
        assert.equal(progress.shardId, SHARD);
        assert.equal(progress.run, 1);
        assert.equal(progress.worker, fake.pinnedQueue);
        assert.deepEqual(progress.lastProcessed, position(1));
        assert.deepEqual(progress.checkpoint, position(1));
        assert.equal(progress.millisBehindLatest, 60_000);
        assert.deepEqual(
          {
            batches: progress.counters.batches,
            recordsProcessed: progress.counters.recordsProcessed,
            checkpoints: progress.counters.checkpoints,
          },
          { batches: 1, recordsProcessed: 2, checkpoints: 1 },
        );
        await fake.until(() => fake.delivered().length === 6, 10_000, 'all six records');
        await handle.signal(stopSignal);
      },
    );

    assert.equal(result.reason, 'REQUESTED');
    assert.equal(result.counters.recordsProcessed, 6);
    assert.deepEqual(result.checkpoint, position(5));
  });
});

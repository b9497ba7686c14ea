/**
 * The stream consumer as coordinator (src/workflows/stream-placement.ts), on Temporal's time-skipping test server: a
 * stub `watchFleet` answers scripted fleet views, stand-in shard consumers (test/fixtures/placement-workflows.ts) record
 * the `moveShard` signals they get. The planner's rule itself is unit-tested (test/unit/placement.test.ts); here: the
 * right consumers get the right signals with increasing `seq`, a move in flight is not sent again, a shard moved in
 * the cooldown is not moved for balance, the watch is called with the last view, cancelled by a stop, and never
 * started when placement is off.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Context } from '@temporalio/activity';
import type { WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import type { Activities } from '../../src/activities';
import type { MoveShard, ShardDescription } from '../../src/consumer-types';
import type { FleetView, WatchFleetInput } from '../../src/fleet-types';
import { shardConsumerWorkflowId } from '../../src/ids';
import {
  type StreamConsumerInput,
  streamConsumerWorkflow,
  type StreamProgress,
  streamProgressQuery,
  stopSignal,
} from '../../src/workflows/stream-consumer';
import { workflowBundle } from '../helpers/bundle';
import { uniqueName } from '../helpers/stack';
import { createTimeSkippingEnv } from '../helpers/temporal-servers';
import { movesQuery } from '../fixtures/placement-workflows';
import { workerLeavingSignal, workerLostSignal } from '../../src/workflows/stream-consumer-signals';

const WORKFLOWS = join(__dirname, '..', 'fixtures', 'placement-workflows.ts');
const SHARDS = ['shardId-000000000000', 'shardId-000000000001', 'shardId-000000000002', 'shardId-000000000003'];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

type StubbedActivities = Pick<
  Activities,
  'prepareLeaseTable' | 'discoverShards' | 'closedWorkflows' | 'closedShardConsumers' | 'watchFleet'
>;

/** Scripted fleet views: layouts (worker name per shard, in SHARDS order) the stub `watchFleet` serves in turn. */
class FleetScript {
  readonly layouts: (string | undefined)[][] = [];
  readonly workers: string[][] = [];
  /** Workers of each layout that stopped polling (their last poll 10 s before the view). */
  readonly quiet: string[][] = [];
  /** Every watch: its input and the index of the layout it returned (-1: cancelled). */
  readonly calls: { input: WatchFleetInput; served: number }[] = [];
  private next = 0;

  constructor(readonly taskQueue: string) {}

  queueOf(name: string): string {
    return `${this.taskQueue}@${name}`;
  }

  push(workers: string[], layout: (string | undefined)[], quiet: string[] = []): number {
    this.workers.push(workers);
    this.quiet.push(quiet);
    this.layouts.push(layout);
    return this.layouts.length - 1;
  }

  /** The view of layout `i` at server time `now`: every worker just polled. */
  view(i: number, now: number): FleetView {
    return {
      at: now,
      workers: this.workers[i]!.map((name) => ({
        workerQueue: this.queueOf(name),
        identity: name,
        lastAccessTime: this.quiet[i]!.includes(name) ? now - 10_000 : now,
      })),
      shards: SHARDS.map((shardId, s) => {
        const name = this.layouts[i]![s];
        return { shardId, ...(name !== undefined ? { worker: this.queueOf(name) } : {}), ended: false };
      }),
    };
  }

  /** As the real activity: at once without `known`; otherwise once the script has a view not served yet. */
  async watchFleet(input: WatchFleetInput): Promise<FleetView> {
    const context = Context.current();
    const call = { input, served: -1 };
    this.calls.push(call);
    if (input.known !== undefined) {
      while (this.next >= this.layouts.length) {
        context.heartbeat();
        await context.sleep(100); // rejects once the workflow cancels the watch
      }
    }
    call.served = Math.min(this.next, this.layouts.length - 1);
    this.next = Math.max(this.next, call.served + 1);
    return this.view(call.served, context.info.currentAttemptScheduledTimestampMs);
  }
}

let env: TestWorkflowEnvironment;
before(async () => {
  env = await createTimeSkippingEnv();
});
after(async () => {
  await env?.teardown();
});

function stubActivities(script: FleetScript): StubbedActivities {
  const shards: ShardDescription[] = SHARDS.map((shardId, i) => ({
    shardId,
    parentShardIds: [],
    hashKeyRange: { startingHashKey: String(i * 1_000), endingHashKey: String(i * 1_000 + 999) },
  }));
  const closed = async (workflowIds: string[]) => {
    const statuses = await Promise.all(
      workflowIds.map(async (id) => (await env.client.workflow.getHandle(id).describe()).status.name),
    );
    return workflowIds.filter((_, i) => statuses[i] !== 'RUNNING');
  };
  return {
    prepareLeaseTable: () => Promise.resolve({}),
    discoverShards: (input) =>
      Promise.resolve(
        input.afterShardId === undefined
          ? { shards, lastShardId: SHARDS.at(-1)!, listed: shards.length }
          : { shards: [], lastShardId: input.afterShardId, listed: 0 },
      ),
    closedWorkflows: (input) => closed(input.workflowIds),
    // Every consumer here is this run's child, watched through its result: the audit has nothing to check.
    closedShardConsumers: () => Promise.resolve([]),
    watchFleet: (input) => script.watchFleet(input),
  };
}

async function until(what: string, predicate: () => Promise<boolean> | boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(100);
  }
}

interface Run {
  script: FleetScript;
  applicationName: string;
  handle: WorkflowHandle<typeof streamConsumerWorkflow>;
  /** The `moveShard` signals each stand-in shard consumer got, by shard id. */
  moves: () => Promise<Record<string, MoveShard[]>>;
}

async function withCoordinator<T>(
  name: string,
  extra: Partial<StreamConsumerInput>,
  prepare: (script: FleetScript) => void,
  body: (run: Run) => Promise<T>,
): Promise<T> {
  const taskQueue = uniqueName(`${name}-tq`);
  const applicationName = uniqueName(`${name}-app`);
  const streamName = uniqueName(`${name}-stream`);
  const script = new FleetScript(taskQueue);
  prepare(script);
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: await workflowBundle(WORKFLOWS),
    activities: stubActivities(script),
  });
  return worker.runUntil(async () => {
    const handle = await env.client.workflow.start(streamConsumerWorkflow, {
      taskQueue,
      workflowId: uniqueName(`${name}-stream-consumer`),
      args: [{ applicationName, streamName, processor: 'none', ...extra }],
    });
    const moves = async () => {
      const result: Record<string, MoveShard[]> = {};
      for (const shardId of SHARDS) {
        const id = shardConsumerWorkflowId(applicationName, streamName, shardId);
        result[shardId] = await env.client.workflow.getHandle(id).query(movesQuery);
      }
      return result;
    };
    return body({ script, applicationName, handle, moves });
  });
}

/** Moves per shard as `[to, reason, seq]`, only shards that got any. */
function summary(moves: Record<string, MoveShard[]>, queueOf: (queue: string) => string) {
  return Object.fromEntries(
    Object.entries(moves)
      .filter(([, list]) => list.length > 0)
      .map(([shardId, list]) => [
        shardId,
        list.map((m) => [m.to === undefined ? undefined : queueOf(m.to), m.reason, m.seq]),
      ]),
  );
}

describe('stream consumer: placement', () => {
  test('moves go to the right shard consumers, once each; in flight and cooldown respected; a stop cancels the watch', async () => {
    await withCoordinator(
      'placement',
      {},
      (script) => {
        // V0: all four on a; b has joined and holds none (bound ceil(4/2) + 1 = 3, one move a round).
        script.push(['a', 'b'], ['a', 'a', 'a', 'a']);
      },
      async ({ script, applicationName, handle, moves }) => {
        const name = (queue: string) => queue.slice(queue.indexOf('@') + 1);
        /** Waits until the workflow processed view `i`: it called the watch again (call i serves view i). */
        const processed = (i: number) => until(`view ${i} processed`, () => script.calls.length > i + 1);

        // Act + Assess, round 0: shard 0 (count bound) to b, as a JOIN, seq 1.
        await processed(0);
        assert.deepEqual(summary(await moves(), name), { [SHARDS[0]!]: [['b', 'JOIN', 1]] });
        assert.equal(script.calls[0]!.input.known, undefined, 'the first watch returns at once');
        assert.equal(script.calls[0]!.input.taskQueue, script.taskQueue, 'watched on the shared queue');
        assert.equal(script.calls[0]!.input.tableName, applicationName, 'the lease table (the application name)');
        assert.equal(script.calls[1]!.input.maxWaitMs, 2_000, 'a full round (1 move of 1): the next view soon');
        assert.deepEqual(
          script.calls[1]!.input.known?.shards.map((s) => s.worker),
          SHARDS.map(() => script.queueOf('a')),
          'the next watch knows the last view',
        );

        // Round 1: the same view (shard 0 not moved yet): it counts on b, so the balance moves shard 1, not shard 0 again.
        script.push(['a', 'b'], ['a', 'a', 'a', 'a']);
        await processed(1);
        assert.deepEqual(summary(await moves(), name), {
          [SHARDS[0]!]: [['b', 'JOIN', 1]],
          [SHARDS[1]!]: [['b', 'BALANCE', 2]],
        });

        // Round 2: both landed on b: balanced, nothing sent; the next watch waits the full 120 s for a change.
        script.push(['a', 'b'], ['b', 'b', 'a', 'a']);
        await processed(2);
        assert.equal(script.calls[3]!.input.maxWaitMs, 120_000);
        const progress: StreamProgress = await handle.query(streamProgressQuery);
        assert.deepEqual(
          progress.workers?.map((w) => [w.identity, w.live, w.suspect, w.shards]),
          [
            ['a', true, false, 2],
            ['b', true, false, 2],
          ],
        );
        assert.equal(progress.waitingForCapacity, 0);
        // The UI's current details show the same per-worker table.
        const metadata = await handle.query<{ currentDetails?: string }>('__temporal_workflow_metadata');
        const details = metadata.currentDetails ?? '';
        for (const worker of ['a', 'b']) {
          assert.ok(details.includes(`| \`${script.queueOf(worker)}\` | yes | 2 | — | 0 | 0 |`), details);
        }
        assert.match(details, /0 shards waiting for capacity/);
        assert.match(details, /2 moves sent, 0 in flight/);

        // Round 3: shards 0 and 1 are back on a (3 vs 1): a gives one to b, but 0 and 1 moved within the cooldown, so 2.
        script.push(['a', 'b'], ['a', 'a', 'a', 'b']);
        await processed(3);
        assert.deepEqual(summary(await moves(), name), {
          [SHARDS[0]!]: [['b', 'JOIN', 1]],
          [SHARDS[1]!]: [['b', 'BALANCE', 2]],
          [SHARDS[2]!]: [['b', 'BALANCE', 3]],
        });

        // A stop cancels the waiting watch; the stream consumer completes.
        await handle.signal(stopSignal);
        const result = await handle.result();
        assert.deepEqual(result.ended, { REQUESTED: 4 });
        assert.equal(script.calls.length, 5, 'no watch after the stop');
        assert.equal(script.calls.at(-1)!.served, -1, 'the last watch was cancelled, not answered');
      },
    );
  });

  test('continue-as-new cancels the watch and carries the placement state: no move sent twice, seq goes on', async () => {
    await withCoordinator(
      'placement-can',
      // Listings every 200 ms grow the history past the knob within seconds.
      { maxHistoryEventsPerRun: 100, shardSyncIntervalMs: 200 },
      (script) => {
        script.push(['a', 'b'], ['a', 'a', 'a', 'a']);
      },
      async ({ script, handle, moves }) => {
        const name = (queue: string) => queue.slice(queue.indexOf('@') + 1);
        await until('the first round', () => script.calls.length >= 2);
        assert.deepEqual(summary(await moves(), name), { [SHARDS[0]!]: [['b', 'JOIN', 1]] });

        // Act: the run continues as new while its watch waits; the next run watches again from scratch (no `known`).
        // (Not told by the progress query: queries of a workflow that keeps continuing as new wait long here.)
        await until('a later run watched the fleet', () => script.calls.some((call, i) => i >= 2 && !call.input.known));
        const firstOfRun2 = script.calls.findIndex((call, i) => i >= 2 && call.input.known === undefined);
        await until('the later run processed its first view', () => script.calls.length > firstOfRun2 + 1);

        // Assess: the same view again; shard 0's move is still in flight (carried), so shard 1 moves, with seq 2.
        assert.equal(script.calls[1]!.served, -1, "the first run's waiting watch was cancelled");
        assert.deepEqual(summary(await moves(), name), {
          [SHARDS[0]!]: [['b', 'JOIN', 1]],
          [SHARDS[1]!]: [['b', 'BALANCE', 2]],
        });
        // (The stop path is the first test's; here a stop would wait out the cancelled watch's throttled heartbeat.)
        await handle.terminate('test done');
      },
    );
  });

  test('a worker lost or leaving restarts the waiting watch at once', async () => {
    await withCoordinator(
      'restart-watch',
      {},
      (script) => {
        // Balanced already: the second watch waits (for a change, up to 120 s).
        script.push(['a', 'b'], ['a', 'a', 'b', 'b']);
      },
      async ({ script, handle }) => {
        await until('a watch waiting', () => script.calls.length === 2);
        // A shard failed over from b: the waiting watch is cancelled and a new one started.
        await handle.signal(workerLostSignal, { workerQueue: script.queueOf('b') });
        await until('the watch started again', () => script.calls.length === 3, 10_000);
        assert.equal(script.calls[1]!.served, -1, 'the waiting watch was cancelled');
        // The same worker again: already known lost, no second restart.
        await handle.signal(workerLostSignal, { workerQueue: script.queueOf('b') });
        await sleep(1_000);
        assert.equal(script.calls.length, 3);
        // b is leaving (its shards handed over): the watch starts again too. (That b then gets nothing: the planner's
        // unit test, test/unit/placement.test.ts.)
        await handle.signal(workerLeavingSignal, { workerQueue: script.queueOf('b') });
        await until('the watch started again after the leaving', () => script.calls.length === 4, 10_000);
        assert.equal(script.calls[2]!.served, -1);
        await handle.signal(stopSignal);
        await handle.result();
      },
    );
  });

  test('placement off: no fleet watch, no moves, no workers in progress', async () => {
    await withCoordinator(
      'no-placement',
      { placement: false },
      (script) => {
        script.push(['a', 'b'], ['a', 'a', 'a', 'a']);
      },
      async ({ script, handle, moves }) => {
        await until('every shard consumer running', async () => {
          const progress = await handle.query(streamProgressQuery);
          return progress.shards.filter((shard) => shard.state === 'RUNNING').length === SHARDS.length;
        });
        await sleep(1_000);
        const progress = await handle.query(streamProgressQuery);
        assert.equal(script.calls.length, 0);
        assert.equal(progress.workers, undefined);
        assert.deepEqual(
          summary(await moves(), (q) => q),
          {},
        );
        await handle.signal(stopSignal);
        assert.deepEqual((await handle.result()).ended, { REQUESTED: 4 });
      },
    );
  });
});

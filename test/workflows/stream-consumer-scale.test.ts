/**
 * StreamConsumerWorkflow at scale, on the real Temporal dev server (the shared test stack) with stubbed activities: 1,000
 * shards are each started exactly once, the stream consumer's history stays bounded run by run, it continues as new
 * (the history knob is set low) without starting any shard again, and a stop still completes it. A second test lets the
 * stream grow between listings and checks that every new shard is started once across continue-as-new.
 *
 * Why the dev server and not the time-skipping one: the shard consumers here end at once and nothing waits on timers,
 * so skipped time buys nothing, while the dev server's visibility store lets the test list every execution by workflow
 * id prefix (a second, independent count of the starts). 1,000 shard consumers take well under a minute there.
 *
 * The stubs: the stream's shards have no parents and carry their hash-key range (so the shard consumer neither
 * describes the shard nor waits on parents); `claimLease` answers SHARD_END, as for a shard an earlier consumer read to
 * its end, so each shard consumer releases its lease and ends ALREADY_ENDED right after claiming, telling the stream
 * consumer by signal. `closedWorkflows` is the real activity (it describes the shard consumers through the client).
 * Visibility listing by `WorkflowId STARTS_WITH` counts every execution, so a shard started twice shows as two.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Context } from '@temporalio/activity';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import type { Activities } from '../../src/activities';
import { withHeartbeats } from '../../src/activities/heartbeat';
import { createStreamActivities } from '../../src/activities/stream-activities';
import { createAwsClients } from '../../src/aws/clients';
import { streamConsumerInput } from '../../src/client/consumers';
import type { ShardDescription } from '../../src/consumer-types';
import { shardConsumerWorkflowId, streamConsumerWorkflowId } from '../../src/ids';
import { SentinelCheckpoint } from '../../src/positions';
import { KCL_APPLICATION, KCL_STATE, KCL_STREAM } from '../../src/search-attributes';
import {
  type StreamConsumerInput,
  streamConsumerWorkflow,
  type StreamProgress,
  streamProgressQuery,
  stopSignal,
} from '../../src/workflows/stream-consumer';
import { workflowBundle } from '../helpers/bundle';
import { kclTestContext, type KclTestContext } from '../helpers/kcl';
import { uniqueName } from '../helpers/stack';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Temporal's default history size at which it suggests continue-as-new (`limit.historySize.suggestContinueAsNew`). */
const SUGGEST_CONTINUE_AS_NEW_BYTES = 4 * 1024 * 1024;
/** Temporal's default event count at which it warns about a history (`limit.historyCount.warn`). */
const WARN_EVENTS = 10_240;

/** Kinesis's shard id format: `shardId-` and 12 digits. */
const shardIdOf = (index: number) => `shardId-${String(index).padStart(12, '0')}`;

function shardDescription(index: number): ShardDescription {
  return {
    shardId: shardIdOf(index),
    parentShardIds: [],
    hashKeyRange: { startingHashKey: String(index * 1_000), endingHashKey: String(index * 1_000 + 999) },
  };
}

type StubbedActivities = Pick<
  Activities,
  'prepareLeaseTable' | 'discoverShards' | 'closedWorkflows' | 'closedShardConsumers' | 'claimLease' | 'releaseLease'
>;

/** What the stubs saw. */
interface FakeStream {
  /** The stream's shards so far, in id order; `grow` adds more. */
  shards: ShardDescription[];
  /** Every `discoverShards` call: its `afterShardId`, and the shard ids it returned. */
  listings: { afterShardId: string | undefined; returned: string[] }[];
  /** Run ids of the shard consumer executions that claimed each shard's lease (a retried attempt counts once). */
  claims: Map<string, Set<string>>;
  /** Shard ids whose lease was released. */
  released: Set<string>;
  /** Called before each incremental listing answers (a test makes the stream grow here). */
  beforeListing?: (nth: number) => void;
  /** Called in `claimLease` before it answers (a test holds some shards there). */
  holdClaim?: (shardId: string) => Promise<void>;
}

function fakeStream(shards: ShardDescription[]): FakeStream {
  return { shards, listings: [], claims: new Map(), released: new Set() };
}

function stubActivities(
  stream: FakeStream,
  client: Client,
  aws: ReturnType<typeof createAwsClients>,
): StubbedActivities {
  const real = createStreamActivities({ ...aws, client });
  return {
    // As ListShards with ExclusiveStartShardId: everything, or only the shards after `afterShardId`.
    async discoverShards(input) {
      if (input.afterShardId !== undefined) stream.beforeListing?.(stream.listings.length);
      const after = input.afterShardId;
      const listed = stream.shards.filter((shard) => after === undefined || shard.shardId > after);
      stream.listings.push({ afterShardId: after, returned: listed.map((shard) => shard.shardId) });
      const lastShardId = listed.at(-1)?.shardId ?? after;
      return { shards: listed, ...(lastShardId ? { lastShardId } : {}), listed: listed.length };
    },
    // A single-stream table of its own: nothing to refuse.
    prepareLeaseTable: () => Promise.resolve({}),
    // Heartbeating, as createActivities wraps it: describing hundreds of workflows may outlast the heartbeat timeout.
    closedWorkflows: (input) => withHeartbeats(() => real.closedWorkflows(input)),
    closedShardConsumers: (input) => withHeartbeats(() => real.closedShardConsumers(input)),
    async claimLease(input) {
      const runId = Context.current().info.workflowExecution?.runId ?? 'unknown';
      const runs = stream.claims.get(input.ref.shardId) ?? new Set<string>();
      runs.add(runId);
      stream.claims.set(input.ref.shardId, runs);
      if (stream.holdClaim) await stream.holdClaim(input.ref.shardId);
      return { counter: 1, checkpoint: SentinelCheckpoint.SHARD_END, ownerSwitchesSinceCheckpoint: 0 };
    },
    async releaseLease(input) {
      stream.released.add(input.ref.shardId);
    },
  };
}

/** One run of the stream consumer's continue-as-new chain, as its history shows it. */
interface RunFigures {
  runId: string;
  events: number;
  bytes: number;
  /** Workflow ids of the children this run started. */
  childStarts: string[];
  signals: number;
  /** Events by type, most frequent first (for the printed figures). */
  types: [string, number][];
  continuedAsNew: boolean;
}

/** Every run of the chain that began with `firstRunId`, followed through its continue-as-new events. */
async function runChain(client: Client, workflowId: string, firstRunId: string): Promise<RunFigures[]> {
  const runs: RunFigures[] = [];
  for (let runId: string | undefined = firstRunId; runId !== undefined;) {
    const history: temporal.api.history.v1.IHistory = await client.workflow.getHandle(workflowId, runId).fetchHistory();
    const events: temporal.api.history.v1.IHistoryEvent[] = history.events ?? [];
    const next: string | undefined =
      events.at(-1)?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId ?? undefined;
    runs.push({
      runId,
      events: events.length,
      bytes: temporal.api.history.v1.History.encode(history).finish().length,
      childStarts: events.flatMap((event) => {
        const id = event.startChildWorkflowExecutionInitiatedEventAttributes?.workflowId;
        return id ? [id] : [];
      }),
      signals: events.filter((event) => event.workflowExecutionSignaledEventAttributes).length,
      types: [
        ...events
          .reduce((counts, event) => {
            const type = temporal.api.enums.v1.EventType[event.eventType ?? 0] ?? String(event.eventType);
            return counts.set(type, (counts.get(type) ?? 0) + 1);
          }, new Map<string, number>())
          .entries(),
      ].sort((a, b) => b[1] - a[1]),
      continuedAsNew: next !== undefined,
    });
    runId = next;
  }
  return runs;
}

/** Executions (runs) per workflow id of the ids under `prefix`, once visibility lists `expected` of them, all closed. */
async function listedExecutions(client: Client, prefix: string, expected: number): Promise<Map<string, string[]>> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const executions = new Map<string, string[]>();
    for await (const execution of client.workflow.list({ query: `WorkflowId STARTS_WITH "${prefix}"` })) {
      executions.set(execution.workflowId, [...(executions.get(execution.workflowId) ?? []), execution.status.name]);
    }
    const statuses = [...executions.values()].flat();
    const settled = statuses.length >= expected && statuses.every((status) => status !== 'RUNNING');
    if (settled || Date.now() > deadline) return executions;
    await sleep(500);
  }
}

async function until(what: string, predicate: () => Promise<boolean> | boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(250);
  }
}

function printRuns(title: string, runs: RunFigures[], started: number, wallMs: number): void {
  const totalEvents = runs.reduce((sum, run) => sum + run.events, 0);
  const totalBytes = runs.reduce((sum, run) => sum + run.bytes, 0);
  console.log(
    `${title}: ${started} shard consumers started and ended in ${(wallMs / 1000).toFixed(1)} s, ${runs.length} runs`,
  );
  runs.forEach((run, i) => {
    console.log(
      `  run ${i + 1}: ${run.events} events, ${(run.bytes / 1024).toFixed(0)} KiB, ${run.childStarts.length} children started, ${run.signals} signals${run.continuedAsNew ? ', continued as new' : ''}`,
    );
    console.log(
      `    ${run.types.map(([type, count]) => `${type.replace(/^EVENT_TYPE_/, '').toLowerCase()} ${count}`).join(', ')}`,
    );
  });
  console.log(
    `  all runs: ${totalEvents} events, ${(totalBytes / 1024).toFixed(0)} KiB = ${(totalEvents / started).toFixed(2)} events and ${(totalBytes / started).toFixed(0)} bytes per started shard`,
  );
}

describe('StreamConsumerWorkflow at scale', () => {
  let context: KclTestContext;
  let aws: ReturnType<typeof createAwsClients>;
  before(async () => {
    context = await kclTestContext();
    aws = createAwsClients(context.stack.aws);
  });
  after(async () => {
    aws?.kinesis.destroy();
    aws?.dynamoDb.destroy();
    await context?.close();
  });

  /** A worker on a task queue of its own with the stubs; starts the stream consumer and runs `body` while it polls. */
  async function withStreamConsumer<T>(
    name: string,
    stream: FakeStream,
    extra: Partial<StreamConsumerInput>,
    body: (handle: WorkflowHandle<typeof streamConsumerWorkflow>, firstRunId: string) => Promise<T>,
  ): Promise<T> {
    const taskQueue = uniqueName(`${name}-tq`);
    const applicationName = uniqueName(`${name}-app`);
    const streamName = uniqueName(`${name}-stream`);
    const worker = await Worker.create({
      connection: context.nativeConnection,
      namespace: context.stack.namespace,
      taskQueue,
      workflowBundle: await workflowBundle(),
      activities: stubActivities(stream, context.client, aws),
    });
    return worker.runUntil(async () => {
      const workflowId = streamConsumerWorkflowId(applicationName, streamName);
      // As startStreamConsumer starts it (search attributes included), plus the history knob under test.
      const started = await context.client.workflow.start(streamConsumerWorkflow, {
        taskQueue,
        workflowId,
        args: [{ ...streamConsumerInput({ applicationName, streamName, processor: 'none' }), ...extra }],
        typedSearchAttributes: [
          { key: KCL_APPLICATION, value: applicationName },
          { key: KCL_STREAM, value: streamName },
          { key: KCL_STATE, value: 'RUNNING' },
        ],
      });
      // Signals and queries go to whichever run is current.
      return body(context.client.workflow.getHandle(workflowId), started.firstExecutionRunId);
    });
  }

  test('1,000 shards: each started once, history bounded per run, continue-as-new, then a stop completes it', async () => {
    // Prepare
    const SHARDS = 1_000;
    const MAX_EVENTS_PER_RUN = 1_000;
    const stream = fakeStream(Array.from({ length: SHARDS }, (_, i) => shardDescription(i)));
    const lastShardId = shardIdOf(SHARDS - 1);
    const t0 = Date.now();

    // Act
    const { progress, result, runs, executions, prefix, allEndedMs } = await withStreamConsumer(
      'scale',
      stream,
      { maxHistoryEventsPerRun: MAX_EVENTS_PER_RUN, shardSyncIntervalMs: 2_000 },
      async (handle, firstRunId) => {
        let progress: StreamProgress | undefined;
        await until(
          'every shard consumer ended and the stream consumer continued as new',
          async () => {
            if (stream.released.size < SHARDS) return false;
            progress = await handle.query(streamProgressQuery);
            return progress.run > 1 && progress.shards.every((shard) => shard.state === 'ENDED');
          },
          150_000,
        );
        const allEndedMs = Date.now() - t0;
        // Let the stream consumer list the shards at least once more (nothing new) before it stops.
        const listings = stream.listings.length;
        await until('another shard listing', () => stream.listings.length > listings, 15_000);
        await handle.signal(stopSignal);
        const result = await handle.result();
        const runs = await runChain(context.client, handle.workflowId, firstRunId);
        const prefix = `${handle.workflowId}/`;
        const executions = await listedExecutions(context.client, prefix, SHARDS);
        return { progress: progress!, result, runs, executions, prefix, allEndedMs };
      },
    );

    // Assess: started exactly once per shard, by every measure.
    printRuns('1,000 shards', runs, result.started, allEndedMs);
    console.log(`  stopped and completed after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const shardIds = stream.shards.map((shard) => shard.shardId);
    assert.equal(progress.started, SHARDS);
    assert.equal(result.started, SHARDS);
    assert.deepEqual([...stream.claims.keys()].sort(), shardIds);
    const claimedTwice = [...stream.claims].filter(([, runIds]) => runIds.size !== 1).map(([shardId]) => shardId);
    assert.deepEqual(claimedTwice, [], 'shards claimed by more than one shard consumer execution');
    const childStarts = runs.flatMap((run) => run.childStarts);
    assert.equal(childStarts.length, SHARDS);
    assert.equal(new Set(childStarts).size, SHARDS);
    assert.equal(executions.size, SHARDS, `visibility lists ${executions.size} workflow ids under ${prefix}`);
    const notOnce = [...executions].filter(([, statuses]) => statuses.length !== 1 || statuses[0] !== 'COMPLETED');
    assert.deepEqual(notOnce, [], 'workflow ids with other than one COMPLETED execution');
    assert.deepEqual(
      [...executions.keys()].sort(),
      shardIds.map((shardId) => shardConsumerWorkflowId(result.applicationName, result.streamName, shardId)).sort(),
    );

    // Continue-as-new happened; the later runs started nothing and listed only after the last shard id.
    assert.ok(runs.length >= 2, `expected continue-as-new with maxHistoryEventsPerRun ${MAX_EVENTS_PER_RUN}`);
    assert.deepEqual(
      runs.slice(1).map((run) => run.childStarts.length),
      runs.slice(1).map(() => 0),
    );
    assert.equal(stream.listings[0]?.afterShardId, undefined);
    assert.ok(stream.listings.length >= 2);
    for (const listing of stream.listings.slice(1)) {
      assert.equal(listing.afterShardId, lastShardId);
      assert.deepEqual(listing.returned, []);
    }

    // History bounded: every run well under Temporal's limits, and a small constant number of events per shard.
    for (const [i, run] of runs.entries()) {
      assert.ok(run.bytes < SUGGEST_CONTINUE_AS_NEW_BYTES, `run ${i + 1} has ${run.bytes} bytes of history`);
      assert.ok(run.events < WARN_EVENTS, `run ${i + 1} has ${run.events} events`);
    }
    const totalEvents = runs.reduce((sum, run) => sum + run.events, 0);
    assert.ok(totalEvents / SHARDS < 8, `${totalEvents} events for ${SHARDS} shards`);

    // The stop completed the stream consumer, its result counting the shards that ended in every run.
    assert.deepEqual(result.ended, { ALREADY_ENDED: SHARDS });
  });

  test('shards that appear between listings are each started once across continue-as-new', async () => {
    // Prepare: 20 shards at first; every third incremental listing finds 10 more, five times. Three of the first shards
    // hold in claimLease until the stream consumer has continued as new twice, so they are carried over as running.
    const FIRST = 20;
    const WAVE = 10;
    const WAVES = 5;
    const TOTAL = FIRST + WAVE * WAVES;
    /** The lowest the workflow accepts, so that it continues as new between waves. */
    const MAX_EVENTS_PER_RUN = 100;
    const stream = fakeStream(Array.from({ length: FIRST }, (_, i) => shardDescription(i)));
    stream.beforeListing = (nth) => {
      if (nth % 3 === 0 && stream.shards.length < TOTAL) {
        const from = stream.shards.length;
        stream.shards.push(...Array.from({ length: WAVE }, (_, i) => shardDescription(from + i)));
      }
    };
    const held = new Set([shardIdOf(0), shardIdOf(1), shardIdOf(2)]);
    let holding = true;
    stream.holdClaim = async (shardId) => {
      while (holding && held.has(shardId)) {
        Context.current().heartbeat();
        await sleep(200);
      }
    };
    const t0 = Date.now();

    // Act
    const { whileHeld, result, runs, executions } = await withStreamConsumer(
      'growing',
      stream,
      { maxHistoryEventsPerRun: MAX_EVENTS_PER_RUN, shardSyncIntervalMs: 200 },
      async (handle, firstRunId) => {
        let whileHeld: StreamProgress | undefined;
        await until(
          'two continue-as-new while three shards are held',
          async () => {
            whileHeld = await handle.query(streamProgressQuery);
            return whileHeld.run >= 3;
          },
          60_000,
        );
        holding = false;
        await until(
          'every shard of every wave ended',
          async () => {
            if (stream.shards.length < TOTAL || stream.released.size < TOTAL) return false;
            const progress = await handle.query(streamProgressQuery);
            return progress.shards.every((shard) => shard.state === 'ENDED');
          },
          90_000,
        );
        await handle.signal(stopSignal);
        const result = await handle.result();
        const runs = await runChain(context.client, handle.workflowId, firstRunId);
        const executions = await listedExecutions(context.client, `${handle.workflowId}/`, TOTAL);
        return { whileHeld: whileHeld!, result, runs, executions };
      },
    );

    // Assess
    printRuns('growing stream', runs, result.started, Date.now() - t0);
    const shardIds = stream.shards.map((shard) => shard.shardId);
    assert.equal(shardIds.length, TOTAL);
    assert.equal(result.started, TOTAL);
    assert.deepEqual(result.ended, { ALREADY_ENDED: TOTAL });
    assert.deepEqual([...stream.claims.keys()].sort(), shardIds);
    const claimedTwice = [...stream.claims].filter(([, runIds]) => runIds.size !== 1).map(([shardId]) => shardId);
    assert.deepEqual(claimedTwice, [], 'shards claimed by more than one shard consumer execution');
    const childStarts = runs.flatMap((run) => run.childStarts);
    assert.equal(childStarts.length, TOTAL);
    assert.equal(new Set(childStarts).size, TOTAL);
    assert.equal(executions.size, TOTAL);
    const notOnce = [...executions].filter(([, statuses]) => statuses.length !== 1 || statuses[0] !== 'COMPLETED');
    assert.deepEqual(notOnce, [], 'workflow ids with other than one COMPLETED execution');

    // The shards were started in several runs, the held ones were carried over as running, and every listing asked
    // only for shards after the highest one listed before it, whichever run it came from.
    const startingRuns = runs.filter((run) => run.childStarts.length > 0).length;
    assert.ok(startingRuns >= 3, `shards were started in ${startingRuns} of ${runs.length} runs`);
    assert.ok(whileHeld.run >= 3);
    assert.deepEqual(
      whileHeld.shards.filter((shard) => held.has(shard.shardId)).map((shard) => shard.state),
      ['RUNNING', 'RUNNING', 'RUNNING'],
    );
    let highest: string | undefined;
    for (const [i, listing] of stream.listings.entries()) {
      assert.equal(listing.afterShardId, highest, `listing ${i + 1}`);
      highest = listing.returned.at(-1) ?? highest;
    }
    assert.equal(highest, shardIdOf(TOTAL - 1));
    // Each run stays near the knob: it continues as new at the first loop turn past it.
    for (const [i, run] of runs.entries()) {
      assert.ok(run.events < 3 * MAX_EVENTS_PER_RUN, `run ${i + 1} has ${run.events} events`);
    }
  });
});

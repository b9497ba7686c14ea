/**
 * ShardConsumerWorkflow before its first record: waiting on parent shards, claiming the lease, choosing where reading
 * starts, and rejecting bad input. Stubbed activities on Temporal's time-skipping test server.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { ResumePosition } from '../../src/consumer-types';
import type { ShardConsumerOptions } from '../../src/options';
import { type Checkpoint, SentinelCheckpoint } from '../../src/positions';
import { type ShardConsumerInput, progressQuery, stopSignal } from '../../src/workflows/shard-consumer';
import { createTimeSkippingEnv } from '../helpers/temporal-servers';
import { type FakeShard, positionsOf, type StubScenario, stubScenario } from '../helpers/stub-activities';

const PARENT = 'shardId-000000000000';
const OTHER_PARENT = 'shardId-000000000001';
const CHILD = 'shardId-000000000002';
const SHARD = 'shardId-000000000007';
const MINUTE = 60_000;

let env: TestWorkflowEnvironment;
before(async () => {
  env = await createTimeSkippingEnv();
});
after(async () => {
  await env?.teardown();
});

/** A child shard of `parents` with three records that is itself already closed (so the consumer runs to its end). */
function childScenario(name: string, parents: string[]): { scenario: StubScenario; child: FakeShard } {
  const scenario = stubScenario(env, name);
  const child = scenario.fake.addShard(CHILD, parents);
  child.append(3);
  child.close([]);
  return { scenario, child };
}

describe('waiting on parent shards', () => {
  test('a child polls its parent every parentShardPollIntervalMs of workflow time and starts only once it reads ENDED', async () => {
    const { scenario, child } = childScenario('one-parent', [PARENT]);
    const { fake } = scenario;
    fake.leases.put({ shardId: PARENT, owner: 'parent-consumer', checkpoint: { sequenceNumber: '17' } });
    fake.hooks.readParents = (_input, call) => {
      if (call.nth === 3) fake.leases.put({ shardId: PARENT, checkpoint: SentinelCheckpoint.SHARD_END });
    };

    const wallStart = Date.now();
    const result = await scenario.run(
      scenario.input(CHILD, { parentShardPollIntervalMs: 10 * MINUTE, initialPosition: 'LATEST' }),
    );

    assert.equal(result.reason, 'TERMINATE');
    const polls = fake.callsOf('readParents');
    assert.deepEqual(
      polls.map((poll) => poll.result?.map((parent) => parent.state)),
      [['IN_PROGRESS'], ['IN_PROGRESS'], ['ENDED']],
    );
    assert.deepEqual(polls[0]?.input.parentShardIds, [PARENT]);
    for (let i = 1; i < polls.length; i++) {
      const gap = polls[i]!.scheduledAtMs - polls[i - 1]!.scheduledAtMs;
      assert.ok(gap >= 10 * MINUTE && gap < 10 * MINUTE + 5_000, `poll ${i} came ${gap} ms after the previous one`);
    }
    assert.ok(Date.now() - wallStart < 20 * MINUTE, 'the 20 minutes of polling were skipped');
    // Nothing of the child happens before the third poll answered ENDED.
    const thirdPollEnded = polls[2]!.endTick!;
    const firstOther = fake.calls.find((call) => call.name !== 'readParents');
    assert.equal(firstOther?.name, 'claimLease');
    assert.ok(firstOther.startTick > thirdPollEnded);
    assert.ok(firstOther.scheduledAtMs >= polls[0].scheduledAtMs + 20 * MINUTE);
    // A child without checkpoint starts at TRIM_HORIZON even though the options say LATEST.
    assert.deepEqual(fake.callsOf('getShardIterator')[0]?.input.position, { type: 'TRIM_HORIZON' });
    assert.deepEqual(fake.delivered(), positionsOf(child));
  });

  test('a merged child waits for BOTH parents; a parent with no lease yet (NOT_STARTED) is waited for', async () => {
    const { scenario, child } = childScenario('two-parents', [PARENT, OTHER_PARENT]);
    const { fake } = scenario;
    fake.leases.put({ shardId: PARENT, owner: 'parent-consumer', checkpoint: SentinelCheckpoint.TRIM_HORIZON });
    fake.hooks.readParents = (_input, call) => {
      // The first parent ends early; the second has no lease for a while, then runs, then ends.
      if (call.nth === 2) fake.leases.put({ shardId: PARENT, checkpoint: SentinelCheckpoint.SHARD_END });
      if (call.nth === 4)
        fake.leases.put({ shardId: OTHER_PARENT, owner: 'other', checkpoint: { sequenceNumber: '5' } });
      if (call.nth === 6) fake.leases.put({ shardId: OTHER_PARENT, checkpoint: SentinelCheckpoint.SHARD_END });
    };

    const result = await scenario.run(scenario.input(CHILD, { parentShardPollIntervalMs: MINUTE }));

    assert.equal(result.reason, 'TERMINATE');
    const polls = fake.callsOf('readParents');
    assert.deepEqual(
      polls.map((poll) => poll.result?.map((parent) => parent.state).join('+')),
      [
        'IN_PROGRESS+NOT_STARTED',
        'ENDED+NOT_STARTED',
        'ENDED+NOT_STARTED',
        'ENDED+IN_PROGRESS',
        'ENDED+IN_PROGRESS',
        'ENDED+ENDED',
      ],
    );
    assert.deepEqual(polls[0]?.input.parentShardIds, [PARENT, OTHER_PARENT]);
    const lastPoll = polls.at(-1)!;
    assert.ok(lastPoll.scheduledAtMs - polls[0].scheduledAtMs >= 5 * MINUTE, 'five poll intervals of workflow time');
    for (const name of ['claimLease', 'initializeProcessor', 'getShardIterator', 'getRecords'] as const) {
      const first = fake.callsOf(name)[0];
      assert.ok(first && first.startTick > lastPoll.endTick!, `${name} only after both parents ended`);
    }
    assert.deepEqual(fake.leases.get(CHILD)?.parentShardIds, [PARENT, OTHER_PARENT]);
    assert.deepEqual(fake.delivered(), positionsOf(child));
  });

  test('a parent that aged out of the stream (no lease, gone from Kinesis) does not hold its child back', async () => {
    const { scenario, child } = childScenario('aged-out', [PARENT, OTHER_PARENT]);
    const { fake } = scenario;
    fake.leases.put({ shardId: PARENT, checkpoint: SentinelCheckpoint.SHARD_END });
    fake.leases.agedOut.add(OTHER_PARENT);

    const result = await scenario.run(scenario.input(CHILD, { parentShardPollIntervalMs: MINUTE }));

    assert.equal(result.reason, 'TERMINATE');
    assert.deepEqual(
      fake.callsOf('readParents').map((poll) => poll.result?.map((parent) => parent.state)),
      [['ENDED', 'AGED_OUT']],
    );
    assert.deepEqual(fake.delivered(), positionsOf(child));
  });

  test('stop while waiting on parents ends REQUESTED without claiming the lease or creating a processor', async () => {
    const { scenario } = childScenario('stop-waiting', [PARENT]);
    const { fake } = scenario;
    fake.leases.put({ shardId: PARENT, owner: 'parent-consumer', checkpoint: { sequenceNumber: '17' } });

    const result = await scenario.run(scenario.input(CHILD, { parentShardPollIntervalMs: MINUTE }), async (handle) => {
      await fake.until(() => fake.count('readParents') === 1, 10_000, 'the first poll');
      await env.sleep(MINUTE);
      await fake.until(() => fake.count('readParents') === 2, 10_000, 'the second poll');
      const progress = await handle.query(progressQuery);
      assert.equal(progress.state, 'WAITING_ON_PARENT');
      assert.deepEqual(progress.parentShardIds, [PARENT]);
      await handle.signal(stopSignal);
    });

    assert.equal(result.reason, 'REQUESTED');
    assert.deepEqual(fake.order(), ['readParents', 'readParents']);
    assert.equal(fake.leases.get(CHILD), undefined, 'the child lease was never claimed');
    assert.equal(result.counters.batches, 0);
  });
});

describe('where reading starts', () => {
  /** Runs a consumer of a closed shard of six plain records to its end. */
  async function startAt(
    name: string,
    options: { lease?: Checkpoint; consumer?: ShardConsumerOptions; parents?: string[] },
  ): Promise<{ scenario: StubScenario; shard: FakeShard; position: ResumePosition | undefined; delivered: string[] }> {
    const scenario = stubScenario(env, name);
    const shard = scenario.fake.addShard(SHARD, options.parents ?? []);
    shard.append(6);
    shard.close([]);
    if (options.lease !== undefined) {
      scenario.fake.leases.put({ shardId: SHARD, owner: 'earlier-worker', counter: 4, checkpoint: options.lease });
    }
    const result = await scenario.run(scenario.input(SHARD, options.consumer));
    assert.equal(result.reason, 'TERMINATE');
    assert.equal(scenario.fake.count('getShardIterator'), 1);
    return {
      scenario,
      shard,
      position: scenario.fake.callsOf('getShardIterator')[0]?.input.position,
      delivered: scenario.fake.delivered(),
    };
  }

  test('a sub-sequence checkpoint resumes AT_SEQUENCE_NUMBER and drops the user records at or before it', async () => {
    const scenario = stubScenario(env, 'sub-sequence');
    const shard = scenario.fake.addShard(SHARD);
    shard.append(1);
    shard.append(2, { subRecords: 3 }); // two KPL aggregates of three user records
    shard.append(2);
    shard.close([]);
    const aggregate = shard.records[1]!.sequenceNumber;
    const checkpoint = { sequenceNumber: aggregate, subSequenceNumber: 1 };
    scenario.fake.leases.put({ shardId: SHARD, owner: 'earlier-worker', counter: 4, checkpoint });

    const result = await scenario.run(scenario.input(SHARD, { maxRecords: 2 }));

    assert.equal(result.reason, 'TERMINATE');
    const { fake } = scenario;
    assert.deepEqual(fake.callsOf('getShardIterator')[0]?.input.position, {
      type: 'AT_SEQUENCE_NUMBER',
      sequenceNumber: aggregate,
    });
    const reads = fake.callsOf('getRecords');
    assert.deepEqual(reads[0]?.input.skipUntil, checkpoint);
    assert.equal(reads[1]?.input.skipUntil, undefined, 'once past the checkpointed aggregate nothing more is dropped');
    assert.deepEqual(fake.callsOf('initializeProcessor')[0]?.input.startingPosition, checkpoint);
    assert.deepEqual(fake.delivered(), [`${aggregate}/2`, ...positionsOf(shard, 2)]);
    // The claim took the lease from the earlier worker (counter 4 -> 5); the first write presents 5.
    assert.equal(fake.leases.written[0]?.counter, 5);
  });

  const sentinels: {
    lease: SentinelCheckpoint;
    consumer: ShardConsumerOptions;
    position: ResumePosition;
    from: number;
  }[] = [
    {
      lease: SentinelCheckpoint.TRIM_HORIZON,
      consumer: { initialPosition: 'LATEST' },
      position: { type: 'TRIM_HORIZON' },
      from: 0,
    },
    {
      lease: SentinelCheckpoint.LATEST,
      consumer: { initialPosition: 'TRIM_HORIZON' },
      position: { type: 'LATEST' },
      from: 6,
    },
  ];
  for (const { lease, consumer, position, from } of sentinels) {
    test(`a ${lease} sentinel in the lease wins over options.initialPosition ${consumer.initialPosition}`, async () => {
      const run = await startAt(`sentinel-${lease}`, { lease, consumer });
      assert.deepEqual(run.position, position);
      assert.deepEqual(run.delivered, positionsOf(run.shard, from));
      assert.equal(run.scenario.fake.callsOf('initializeProcessor')[0]?.input.startingPosition, lease);
    });
  }

  test('an AT_TIMESTAMP sentinel in the lease reads from options.initialPositionTimestamp', async () => {
    const scenario = stubScenario(env, 'sentinel-at-timestamp');
    const shard = scenario.fake.addShard(SHARD);
    shard.append(6);
    shard.close([]);
    const timestamp = shard.records[2]!.arrivedAt;
    scenario.fake.leases.put({ shardId: SHARD, checkpoint: SentinelCheckpoint.AT_TIMESTAMP });

    const result = await scenario.run(scenario.input(SHARD, { initialPositionTimestamp: timestamp }));

    assert.equal(result.reason, 'TERMINATE');
    assert.deepEqual(scenario.fake.callsOf('getShardIterator')[0]?.input.position, { type: 'AT_TIMESTAMP', timestamp });
    assert.deepEqual(scenario.fake.delivered(), positionsOf(shard, 2));
  });

  test('without a checkpoint the consumer starts at LATEST by default', async () => {
    const run = await startAt('no-checkpoint-default', {});
    assert.deepEqual(run.position, { type: 'LATEST' });
    assert.deepEqual(run.delivered, []);
    assert.equal(run.scenario.fake.callsOf('initializeProcessor')[0]?.input.startingPosition, 'LATEST');
  });

  test('without a checkpoint the consumer starts at options.initialPosition TRIM_HORIZON', async () => {
    const run = await startAt('no-checkpoint-trim', { consumer: { initialPosition: 'TRIM_HORIZON' } });
    assert.deepEqual(run.position, { type: 'TRIM_HORIZON' });
    assert.deepEqual(run.delivered, positionsOf(run.shard));
  });

  test('without a checkpoint the consumer starts at options.initialPosition AT_TIMESTAMP with its timestamp', async () => {
    const scenario = stubScenario(env, 'no-checkpoint-at-timestamp');
    const shard = scenario.fake.addShard(SHARD);
    shard.append(6);
    shard.close([]);
    const timestamp = shard.records[4]!.arrivedAt;

    await scenario.run(scenario.input(SHARD, { initialPosition: 'AT_TIMESTAMP', initialPositionTimestamp: timestamp }));

    assert.deepEqual(scenario.fake.callsOf('getShardIterator')[0]?.input.position, { type: 'AT_TIMESTAMP', timestamp });
    assert.equal(scenario.fake.callsOf('initializeProcessor')[0]?.input.startingPosition, 'AT_TIMESTAMP');
    assert.deepEqual(scenario.fake.delivered(), positionsOf(shard, 4));
  });

  test('a child shard without a checkpoint starts at TRIM_HORIZON whatever the options; its parents come from describeShard', async () => {
    const scenario = stubScenario(env, 'child-trim-horizon');
    const shard = scenario.fake.addShard(SHARD, [PARENT]);
    shard.append(4);
    shard.close([]);
    scenario.fake.leases.put({ shardId: PARENT, checkpoint: SentinelCheckpoint.SHARD_END });
    const input: ShardConsumerInput = scenario.input(SHARD, { initialPosition: 'LATEST' });
    assert.ok(input.parentShardIds && input.hashKeyRange);
    delete input.parentShardIds;
    delete input.hashKeyRange;

    await scenario.run(input);

    const { fake } = scenario;
    assert.equal(fake.count('describeShard'), 1);
    assert.deepEqual(fake.callsOf('claimLease')[0]?.input.hashKeyRange, shard.hashKeyRange);
    assert.deepEqual(fake.callsOf('readParents')[0]?.input.parentShardIds, [PARENT]);
    assert.deepEqual(fake.callsOf('getShardIterator')[0]?.input.position, { type: 'TRIM_HORIZON' });
    assert.deepEqual(fake.delivered(), positionsOf(shard));
  });

  test('LATEST is pinned to the time its iterator was taken: a re-read after an expired iterator misses nothing', async () => {
    const scenario = stubScenario(env, 'latest-pinned');
    const { fake } = scenario;
    const shard = fake.addShard(SHARD);
    shard.append(3); // before the consumer started: not delivered
    fake.hooks.getRecords = (_input, call) => {
      if (call.nth !== 1) return;
      shard.append(2); // arrive after the LATEST iterator was taken, before the next read
      shard.close([]);
      throw ApplicationFailure.nonRetryable('Iterator expired', 'ExpiredIterator');
    };

    const result = await scenario.run(scenario.input(SHARD));

    assert.equal(result.reason, 'TERMINATE');
    const iterators = fake.callsOf('getShardIterator');
    const obtainedAt = iterators[0]?.result?.obtainedAt;
    assert.ok(obtainedAt);
    assert.deepEqual(
      iterators.map((call) => call.input.position),
      [{ type: 'LATEST' }, { type: 'AT_TIMESTAMP', timestamp: obtainedAt }],
    );
    assert.deepEqual(fake.delivered(), positionsOf(shard, 3));
    assert.equal(result.counters.expiredIterators, 1);
  });

  test('a lease already at SHARD_END ends ALREADY_ENDED without creating a processor or reading', async () => {
    const scenario = stubScenario(env, 'already-ended');
    scenario.fake.addShard(SHARD).append(3);
    scenario.fake.leases.put({ shardId: SHARD, checkpoint: SentinelCheckpoint.SHARD_END, childShardIds: [CHILD] });

    const result = await scenario.run(scenario.input(SHARD));

    assert.equal(result.reason, 'ALREADY_ENDED');
    assert.equal(result.checkpoint, SentinelCheckpoint.SHARD_END);
    assert.deepEqual(
      scenario.fake.order().filter((name) => name !== 'releaseLease'),
      ['claimLease'],
    );
    assert.equal(scenario.fake.leases.written.length, 0);
    assert.deepEqual(scenario.fake.delivered(), []);
  });
});

describe('invalid input fails the workflow with InvalidConfig', () => {
  const cases: { name: string; input: (scenario: StubScenario) => ShardConsumerInput; message: RegExp }[] = [
    {
      name: 'maxRecords 0',
      input: (s) => s.input(SHARD, { maxRecords: 0 }),
      message: /maxRecords must be between 1 and 10000/,
    },
    {
      name: 'an unknown (misspelt) option',
      input: (s) => s.input(SHARD, { maxRecord: 5 } as ShardConsumerOptions),
      message: /unknown option\(s\): maxRecord/,
    },
    {
      name: 'AT_TIMESTAMP without a timestamp',
      input: (s) => s.input(SHARD, { initialPosition: 'AT_TIMESTAMP' }),
      message: /initialPosition AT_TIMESTAMP needs initialPositionTimestamp/,
    },
    {
      name: 'a missing shardId',
      input: (s) => {
        const input: Partial<ShardConsumerInput> = s.input(SHARD);
        delete input.shardId;
        return input as ShardConsumerInput;
      },
      message: /needs a non-empty shardId/,
    },
  ];
  for (const { name, input, message } of cases) {
    test(name, async () => {
      const scenario = stubScenario(env, 'invalid');
      scenario.fake.addShard(SHARD).append(1);

      await assert.rejects(scenario.run(input(scenario)), (error: unknown) => {
        assert.ok(error instanceof WorkflowFailedError, String(error));
        assert.ok(error.cause instanceof ApplicationFailure, String(error.cause));
        assert.equal(error.cause.type, 'InvalidConfig');
        assert.match(error.cause.message, message);
        return true;
      });
      assert.deepEqual(scenario.fake.order(), [], 'nothing was called');
    });
  }

  test('an AT_TIMESTAMP sentinel in the lease without options.initialPositionTimestamp', async () => {
    const scenario = stubScenario(env, 'invalid-lease');
    scenario.fake.addShard(SHARD).append(1);
    scenario.fake.leases.put({ shardId: SHARD, checkpoint: SentinelCheckpoint.AT_TIMESTAMP });

    await assert.rejects(scenario.run(scenario.input(SHARD)), (error: unknown) => {
      assert.ok(error instanceof WorkflowFailedError && error.cause instanceof ApplicationFailure, String(error));
      assert.equal(error.cause.type, 'InvalidConfig');
      assert.match(error.cause.message, new RegExp(`${SHARD}: .*AT_TIMESTAMP.*no initialPositionTimestamp`));
      return true;
    });
    assert.deepEqual(scenario.fake.order(), ['claimLease']);
  });
});

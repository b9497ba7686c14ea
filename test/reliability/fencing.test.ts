/**
 * Fencing of checkpoints by lease owner and counter: a former owner or a stale attempt can neither move a checkpoint
 * backwards nor overwrite a newer owner's; the consumer that lost its lease ends as a ZOMBIE and writes nothing more.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import {
  type CheckpointInput,
  type ClaimLeaseInput,
  createCheckpointActivities,
} from '../../src/activities/checkpoint-activities';
import { CheckpointTable } from '../../src/checkpoint/checkpoint-table';
import type { ShardRef } from '../../src/consumer-types';
import type { RecordProcessorFactory, ShutdownReason } from '../../src/record-processor';
import { progressQuery } from '../../src/workflows/shard-consumer';
import {
  createStream,
  firstShardId,
  kclTestContextForSuite,
  putRecords,
  startShardConsumer,
  testWorker,
} from '../helpers/kcl';
import { sequenceNumber } from '../helpers/records';
import { uniqueName } from '../helpers/stack';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('checkpoint fencing', () => {
  const context = kclTestContextForSuite();

  test('the checkpoint activity refuses a former owner and a stale attempt (CheckpointConflict, not retried) and accepts an idempotent retry', async () => {
    // Prepare: owner A claims and checkpoints; owner B takes the shard over and checkpoints further.
    const tableName = uniqueName('fencing');
    const ref: ShardRef = { applicationName: tableName, streamName: 'fenced', shardId: 'shardId-000000000000' };
    const activities = createCheckpointActivities({ dynamoDb: context.dynamoDb, kinesis: context.kinesis });
    const env = new MockActivityEnvironment();
    const run = <I, O>(activity: (input: I) => Promise<O>, input: I) =>
      env.run<[I], O, (input: I) => Promise<O>>(activity, input);
    const table = new CheckpointTable({ dynamoDb: context.dynamoDb, tableName });
    const checkpoint = (owner: string, counter: number, position: CheckpointInput['checkpoint']) =>
      run((input: CheckpointInput) => activities.checkpoint(input), {
        tableName,
        ref,
        owner,
        counter,
        checkpoint: position,
      });
    const at = (n: number) => ({ sequenceNumber: sequenceNumber(n) });

    const claimA = await run((input: ClaimLeaseInput) => activities.claimLease(input), {
      tableName,
      ref,
      owner: 'owner-A',
      parentShardIds: [],
    });
    const afterA = await checkpoint('owner-A', claimA.counter, at(10));
    const claimB = await table.claim({ shardId: ref.shardId, owner: 'owner-B' });
    const afterB = await checkpoint('owner-B', claimB.counter, at(20));
    const rawItem = async () =>
      (
        await context.dynamoDb.send(
          new GetItemCommand({ TableName: tableName, Key: { leaseKey: { S: ref.shardId } }, ConsistentRead: true }),
        )
      ).Item;
    const stored = await rawItem();
    assert.deepEqual(await table.getLease(ref.shardId), {
      shardId: ref.shardId,
      owner: 'owner-B',
      counter: afterB.counter,
      checkpoint: { ...at(20), subSequenceNumber: 0 },
      ownerSwitchesSinceCheckpoint: 0,
      parentShardIds: [],
      childShardIds: [],
    });

    // Act + assess: every refused write leaves the item exactly as it was.
    const refused = async (what: string, write: Promise<unknown>, reason: RegExp) => {
      const failure = await write.then(
        () => assert.fail(`${what}: the write should have been refused`),
        (error: unknown) => error,
      );
      assert.ok(failure instanceof ApplicationFailure, `${what}: ${String(failure)}`);
      assert.equal(failure.type, 'CheckpointConflict', what);
      assert.equal(failure.nonRetryable, true, `${what}: not retried`);
      assert.match(failure.message, reason, what);
      assert.deepEqual(await rawItem(), stored, `${what}: the stored lease is unchanged`);
      console.log(`${what}: ${failure.message}`);
    };
    await refused(
      'former owner moving the checkpoint backwards',
      checkpoint('owner-A', afterA.counter, at(15)),
      /owned by owner-B .* another consumer took this shard/,
    );
    await refused(
      'former owner overwriting with a later position',
      checkpoint('owner-A', afterA.counter, at(30)),
      /another consumer took this shard/,
    );
    await refused(
      'former owner writing SHARD_END',
      checkpoint('owner-A', afterA.counter, 'SHARD_END'),
      /another consumer took this shard/,
    );
    await refused(
      'stale attempt of the current owner (older counter, older position)',
      checkpoint('owner-B', claimB.counter, at(18)),
      /this attempt is stale/,
    );
    await refused(
      'stale attempt of the current owner (much older counter, same position)',
      checkpoint('owner-B', claimB.counter - 2, at(20)),
      /this attempt is stale/,
    );

    // A retry of the write that already applied (same owner, counter and position) succeeds and changes nothing.
    assert.deepEqual(await checkpoint('owner-B', claimB.counter, at(20)), afterB);
    assert.deepEqual(await rawItem(), stored);
    // The owner carries on from there.
    const next = await checkpoint('owner-B', afterB.counter, at(25));
    assert.equal(next.counter, afterB.counter + 1);
    assert.deepEqual((await table.getLease(ref.shardId))?.checkpoint, { ...at(25), subSequenceNumber: 0 });
  });

  test('a consumer whose lease another owner claimed: its next checkpoint is fenced, shutdown(ZOMBIE) without a checkpointer, ends ZOMBIE', async () => {
    // Prepare: a consumer that has processed and checkpointed 6 records.
    const streamName = await createStream(context.kinesis, 1, 'fencing');
    const shardId = await firstShardId(context.kinesis, streamName);
    const applicationName = uniqueName('app');
    const taskQueue = uniqueName('tq');
    const puts = await putRecords(
      context.kinesis,
      streamName,
      ['r0', 'r1', 'r2', 'r3', 'r4', 'r5'].map((data) => ({ partitionKey: data, data })),
    );
    const delivered: string[] = [];
    const shutdowns: { reason: ShutdownReason; withCheckpointer: boolean }[] = [];
    const factory: RecordProcessorFactory = () => ({
      async processRecords({ records, checkpointer }) {
        delivered.push(...records.map((record) => Buffer.from(record.data).toString()));
        await checkpointer.checkpoint();
      },
      shutdown(input) {
        shutdowns.push({ reason: input.reason, withCheckpointer: input.checkpointer !== undefined });
      },
    });
    const worker = await testWorker(context, { processors: { fenced: factory }, taskQueue });
    const table = new CheckpointTable({ dynamoDb: context.dynamoDb, tableName: applicationName });
    const waitFor = async (what: string, predicate: () => Promise<boolean> | boolean) => {
      for (let i = 0; i < 300 && !(await predicate()); i++) await sleep(100);
      assert.ok(await predicate(), `timed out waiting for ${what}`);
    };

    const { result, progressBefore, intruder, deliveredBeforeClaim } = await worker.runUntil(
      (async () => {
        const handle = await startShardConsumer(context, {
          taskQueue,
          applicationName,
          streamName,
          shardId,
          processor: 'fenced',
          options: { initialPosition: 'TRIM_HORIZON', maxRecords: 3, idleTimeBetweenReadsMs: 200 },
        });
        await waitFor('the consumer to checkpoint r5', async () => {
          const lease = await table.getLease(shardId).catch(() => undefined); // the table may not exist yet
          const checkpoint = lease?.checkpoint;
          return typeof checkpoint === 'object' && checkpoint.sequenceNumber === puts[5]?.sequenceNumber;
        });
        const progressBefore = await handle.query(progressQuery);
        const deliveredBeforeClaim = delivered.length;

        // Act: another owner (say, a KCL worker) claims the lease and checkpoints where it got to.
        const claimed = await table.claim({ shardId, owner: 'intruder' });
        const intruder = await table.checkpoint({
          shardId,
          owner: 'intruder',
          counter: claimed.counter,
          checkpoint: { sequenceNumber: puts[2]?.sequenceNumber ?? '' },
        });
        await putRecords(
          context.kinesis,
          streamName,
          ['r6', 'r7', 'r8'].map((data) => ({ partitionKey: data, data })),
        );
        return { result: await handle.result(), progressBefore, intruder, deliveredBeforeClaim };
      })(),
    );

    // Assess
    const lease = await table.getLease(shardId);
    console.log(
      `ZOMBIE: consumer had checkpointed r5 (${progressBefore.counters.checkpoints} checkpoints); intruder claimed and ` +
        `checkpointed r2 (counter ${intruder.counter}); consumer ended ${result.reason}; processor saw ` +
        `${delivered.length - deliveredBeforeClaim} more records before it was fenced; shutdowns ${JSON.stringify(shutdowns)}`,
    );
    assert.equal(deliveredBeforeClaim, 6);
    assert.equal(result.reason, 'ZOMBIE');
    assert.deepEqual(shutdowns, [{ reason: 'ZOMBIE', withCheckpointer: false }]);
    assert.deepEqual(result.checkpoint, { sequenceNumber: puts[5]?.sequenceNumber }, 'its own last checkpoint');
    assert.deepEqual(
      lease && { owner: lease.owner, counter: lease.counter, checkpoint: lease.checkpoint },
      {
        owner: 'intruder',
        counter: intruder.counter,
        checkpoint: { sequenceNumber: puts[2]?.sequenceNumber, subSequenceNumber: 0 },
      },
      "the other owner's lease and checkpoint are intact",
    );
    assert.deepEqual(delivered.slice(0, 6), ['r0', 'r1', 'r2', 'r3', 'r4', 'r5']);
  });
});

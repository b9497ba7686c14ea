/**
 * Lease claims against a live Java KCL worker: a lease whose counter moves within the failover time (KCL renewing it)
 * is not taken, and the error names its owner; once the KCL worker stops renewing, or with force, it is taken. Leases
 * of temporal-kcl consumers are claimed without waiting.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type DynamoDBClient, PutItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { createDynamoDbClient } from '../../src/aws/clients';
import { CheckpointTable } from '../../src/checkpoint/checkpoint-table';
import { LeaseHeldByLiveWorkerError } from '../../src/errors';
import { leaseOwner, shardConsumerWorkflowId } from '../../src/ids';
import { testStack, uniqueName } from '../helpers/stack';

const SHARD = 'shardId-000000000000';
const KCL_WORKER = 'kcl-worker-1f3a'; // a Java KCL worker id
const OURS = leaseOwner(shardConsumerWorkflowId('app', 'stream', SHARD), 'run-1');

describe('claiming a lease a live KCL worker holds', () => {
  let dynamoDb: DynamoDBClient;
  before(async () => {
    dynamoDb = createDynamoDbClient((await testStack()).aws);
  });
  after(() => dynamoDb.destroy());

  async function tableWithKclLease(guard: { failoverTimeMs: number; force?: boolean }) {
    const tableName = uniqueName('guard');
    const plain = new CheckpointTable({ dynamoDb, tableName });
    await plain.ensureTable();
    await dynamoDb.send(
      new PutItemCommand({
        TableName: tableName,
        Item: {
          leaseKey: { S: SHARD },
          leaseOwner: { S: KCL_WORKER },
          leaseCounter: { N: '5' },
          checkpoint: { S: '49590338271490256608559692538361571095921575989136588898' },
          checkpointSubSequenceNumber: { N: '0' },
          ownerSwitchesSinceCheckpoint: { N: '0' },
        },
      }),
    );
    /** What a live KCL worker does: increment the counter every `everyMs` (KCL renews every failover time / 3). */
    const renew = (everyMs: number) => {
      const timer = setInterval(() => {
        void dynamoDb
          .send(
            new UpdateItemCommand({
              TableName: tableName,
              Key: { leaseKey: { S: SHARD } },
              UpdateExpression: 'ADD leaseCounter :one',
              ExpressionAttributeValues: { ':one': { N: '1' } },
            }),
          )
          .catch(() => undefined);
      }, everyMs);
      return () => clearInterval(timer);
    };
    return { table: new CheckpointTable({ dynamoDb, tableName, liveOwnerGuard: guard }), plain, renew };
  }

  test('a renewed lease is refused naming its owner; a stale one is taken after the failover time', async () => {
    const { table, plain, renew } = await tableWithKclLease({ failoverTimeMs: 1_000 });
    const stop = renew(250);
    try {
      await assert.rejects(table.claim({ shardId: SHARD, owner: OURS }), (error: unknown) => {
        assert.ok(error instanceof LeaseHeldByLiveWorkerError, String(error));
        assert.equal(error.owner, KCL_WORKER);
        assert.match(error.message, new RegExp(`shard ${SHARD} is held by a live worker, ${KCL_WORKER}`));
        assert.match(error.message, /--force/);
        return true;
      });
      assert.equal((await plain.getLease(SHARD))?.owner, KCL_WORKER, 'the lease was not taken');
    } finally {
      stop();
    }
    // The KCL application is stopped: nothing renews the lease any more.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const started = Date.now();
    const lease = await table.claim({ shardId: SHARD, owner: OURS });
    assert.equal(lease.owner, OURS);
    assert.ok(Date.now() - started >= 1_000, 'the claim watched the lease for the failover time');
    assert.equal(lease.ownerSwitchesSinceCheckpoint, 1);
  });

  test('force takes a live lease at once; a temporal-kcl lease is claimed without waiting', async () => {
    const { table, renew } = await tableWithKclLease({ failoverTimeMs: 5_000, force: true });
    const stop = renew(250);
    try {
      const started = Date.now();
      assert.equal((await table.claim({ shardId: SHARD, owner: OURS })).owner, OURS);
      assert.ok(Date.now() - started < 2_000, `forced claim took ${Date.now() - started} ms`);
    } finally {
      stop();
    }
    const guarded = await tableWithKclLease({ failoverTimeMs: 5_000 });
    await guarded.plain.claim({ shardId: SHARD, owner: OURS });
    const started = Date.now();
    const other = leaseOwner(shardConsumerWorkflowId('app', 'stream', SHARD), 'run-2');
    assert.equal((await guarded.table.claim({ shardId: SHARD, owner: other })).owner, other);
    assert.ok(Date.now() - started < 2_000, `claim from a temporal-kcl owner took ${Date.now() - started} ms`);
  });
});

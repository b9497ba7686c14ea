import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  type AttributeValue,
  CreateTableCommand,
  DeleteTableCommand,
  DescribeTableCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  ScanCommand,
  waitUntilTableExists,
} from '@aws-sdk/client-dynamodb';
import { createDynamoDbClient } from '../../src/aws/clients';
import { CheckpointTable } from '../../src/checkpoint/checkpoint-table';
import {
  CheckpointConflictError,
  InvalidLeaseRequestError,
  KclError,
  LeaseTableMissingError,
  LeaseTableSchemaError,
} from '../../src/errors';
import { testStack, uniqueName } from '../helpers/stack';

const SHARD = 'shardId-000000000001';
const SEQ_1 = '49590338271490256608559692538361571095921575989136588898';
const SEQ_2 = '49590338271490256608559692538361571095921575989136588999';
const SEQ_3 = '49590338271490256608559692540925702759324208523137515618';

// Started outside any test or hook: when this file runs alone, the stack it starts lives until the file's last test.
const stack = testStack();
let dynamoDb: DynamoDBClient;

before(async () => {
  const { aws } = await stack;
  dynamoDb = createDynamoDbClient(aws);
});
after(() => dynamoDb.destroy());

/** A lease table of its own for one test, created through the module under test. */
async function newTable(): Promise<{ table: CheckpointTable; tableName: string }> {
  const tableName = uniqueName('leases');
  const table = new CheckpointTable({ dynamoDb, tableName });
  await table.ensureTable();
  return { table, tableName };
}

/** The stored item, read around the module under test. */
async function rawItem(tableName: string, shardId: string): Promise<Record<string, AttributeValue> | undefined> {
  const { Item } = await dynamoDb.send(
    new GetItemCommand({ TableName: tableName, Key: { leaseKey: { S: shardId } }, ConsistentRead: true }),
  );
  return Item;
}

/** Creates a table directly, bypassing the module, and waits for it. */
async function createForeignTable(
  tableName: string,
  keys: { name: string; type: 'S' | 'N'; keyType: 'HASH' | 'RANGE' }[],
): Promise<void> {
  await dynamoDb.send(
    new CreateTableCommand({
      TableName: tableName,
      AttributeDefinitions: keys.map((k) => ({ AttributeName: k.name, AttributeType: k.type })),
      KeySchema: keys.map((k) => ({ AttributeName: k.name, KeyType: k.keyType })),
      BillingMode: 'PAY_PER_REQUEST',
    }),
  );
  await waitUntilTableExists({ client: dynamoDb, maxWaitTime: 30, minDelay: 1 }, { TableName: tableName });
}

/** Counts the requests a client sends. */
function countRequests(client: DynamoDBClient): () => number {
  let count = 0;
  client.middlewareStack.add(
    (next) => (args) => {
      count++;
      return next(args);
    },
    { step: 'initialize', name: `count-${uniqueName('mw')}` },
  );
  return () => count;
}

describe('CheckpointTable.ensureTable', () => {
  test('creates a KCL-shaped PAY_PER_REQUEST table on demand, then makes no further request', async () => {
    const { aws } = await stack;
    const client = createDynamoDbClient(aws);
    try {
      const tableName = uniqueName('leases');
      const requests = countRequests(client);
      const table = new CheckpointTable({ dynamoDb: client, tableName });

      await table.ensureTable();
      const afterFirst = requests();
      await table.ensureTable();

      assert.equal(requests(), afterFirst, 'the second call is memoized');
      const { Table } = await client.send(new DescribeTableCommand({ TableName: tableName }));
      assert.equal(Table?.TableStatus, 'ACTIVE');
      assert.deepEqual(Table?.KeySchema, [{ AttributeName: 'leaseKey', KeyType: 'HASH' }]);
      assert.deepEqual(Table?.AttributeDefinitions, [{ AttributeName: 'leaseKey', AttributeType: 'S' }]);
      assert.equal(Table?.BillingModeSummary?.BillingMode, 'PAY_PER_REQUEST');
    } finally {
      client.destroy();
    }
  });

  test('accepts an existing lease table and keeps its items; concurrent creators both succeed', async () => {
    const tableName = uniqueName('leases');
    const creators = [1, 2, 3].map(() => new CheckpointTable({ dynamoDb, tableName }));
    await Promise.all(creators.map((t) => t.ensureTable()));
    const [first] = creators;
    assert.ok(first);
    await first.claim({ shardId: SHARD, owner: 'a' });

    await new CheckpointTable({ dynamoDb, tableName }).ensureTable();

    assert.equal((await rawItem(tableName, SHARD))?.leaseOwner?.S, 'a');
  });

  for (const [label, keys] of [
    ['hash key id', [{ name: 'id', type: 'S', keyType: 'HASH' }]],
    [
      'leaseKey with a range key',
      [
        { name: 'leaseKey', type: 'S', keyType: 'HASH' },
        { name: 'checkpoint', type: 'S', keyType: 'RANGE' },
      ],
    ],
    ['numeric leaseKey', [{ name: 'leaseKey', type: 'N', keyType: 'HASH' }]],
  ] as const) {
    test(`rejects a table with ${label} and leaves it exactly as it was`, async () => {
      const tableName = uniqueName('foreign');
      await createForeignTable(tableName, [...keys]);
      const item: Record<string, AttributeValue> = {};
      for (const k of keys) item[k.name] = k.type === 'S' ? { S: 'x-1' } : { N: '1' };
      item.payload = { S: 'keep me' };
      await dynamoDb.send(new PutItemCommand({ TableName: tableName, Item: item }));
      const before = (await dynamoDb.send(new DescribeTableCommand({ TableName: tableName }))).Table;

      const table = new CheckpointTable({ dynamoDb, tableName });
      await assert.rejects(table.ensureTable(), (error: unknown) => {
        assert.ok(error instanceof LeaseTableSchemaError);
        assert.equal(error.name, 'LeaseTableSchema');
        assert.equal(error.tableName, tableName);
        assert.match(error.message, new RegExp(tableName));
        assert.match(error.message, new RegExp(`found key schema ${keys[0].name} \\(HASH, ${keys[0].type}\\)`));
        assert.match(error.message, /leaseKey \(HASH, S\)/);
        assert.match(error.message, /left untouched/);
        return true;
      });

      const afterwards = (await dynamoDb.send(new DescribeTableCommand({ TableName: tableName }))).Table;
      assert.deepEqual(afterwards?.KeySchema, before?.KeySchema);
      assert.deepEqual(afterwards?.AttributeDefinitions, before?.AttributeDefinitions);
      assert.deepEqual(afterwards?.CreationDateTime, before?.CreationDateTime);
      assert.equal(afterwards?.TableStatus, 'ACTIVE');
      const { Items } = await dynamoDb.send(new ScanCommand({ TableName: tableName, ConsistentRead: true }));
      assert.deepEqual(Items, [item]);
    });
  }

  test('a table deleted after ensureTable surfaces as LeaseTableMissingError, and ensureTable recreates it', async () => {
    const { table, tableName } = await newTable();
    await dynamoDb.send(new DeleteTableCommand({ TableName: tableName }));

    await assert.rejects(table.getLease(SHARD), (error: unknown) => {
      assert.ok(error instanceof LeaseTableMissingError);
      assert.equal(error.name, 'LeaseTableMissing');
      assert.equal(error.tableName, tableName);
      return true;
    });
    await assert.rejects(
      table.checkpoint({ shardId: SHARD, owner: 'a', counter: 1, checkpoint: 'TRIM_HORIZON' }),
      LeaseTableMissingError,
    );

    await table.ensureTable();
    assert.equal((await table.claim({ shardId: SHARD, owner: 'a' })).counter, 1);
  });
});

describe('CheckpointTable.claim', () => {
  test('a new shard gets counter 1, the owner, parentShardId as a string set and the hash key range', async () => {
    const { table, tableName } = await newTable();

    const lease = await table.claim({
      shardId: SHARD,
      owner: 'wf-a',
      parentShardIds: ['shardId-000000000000'],
      hashKeyRange: { startingHashKey: '0', endingHashKey: '170141183460469231731687303715884105727' },
    });

    assert.deepEqual(lease, {
      shardId: SHARD,
      owner: 'wf-a',
      counter: 1,
      ownerSwitchesSinceCheckpoint: 0,
      parentShardIds: ['shardId-000000000000'],
      childShardIds: [],
      hashKeyRange: { startingHashKey: '0', endingHashKey: '170141183460469231731687303715884105727' },
    });
    assert.deepEqual(await rawItem(tableName, SHARD), {
      leaseKey: { S: SHARD },
      leaseOwner: { S: 'wf-a' },
      leaseCounter: { N: '1' },
      ownerSwitchesSinceCheckpoint: { N: '0' },
      parentShardId: { SS: ['shardId-000000000000'] },
      startingHashKey: { S: '0' },
      endingHashKey: { S: '170141183460469231731687303715884105727' },
    });
  });

  test('a shard without parents gets no parentShardId attribute (a string set cannot be empty)', async () => {
    const { table, tableName } = await newTable();

    await table.claim({ shardId: SHARD, owner: 'wf-a', parentShardIds: [] });

    const item = await rawItem(tableName, SHARD);
    assert.equal(item?.parentShardId, undefined);
    assert.equal(item?.leaseCounter?.N, '1');
  });

  test('a new owner increments the counter and ownerSwitchesSinceCheckpoint; a re-claim only the counter', async () => {
    const { table } = await newTable();
    await table.claim({ shardId: SHARD, owner: 'wf-a' });
    const a = await table.checkpoint({
      shardId: SHARD,
      owner: 'wf-a',
      counter: 1,
      checkpoint: { sequenceNumber: SEQ_1 },
    });

    const b = await table.claim({ shardId: SHARD, owner: 'wf-b' });
    const bAgain = await table.claim({ shardId: SHARD, owner: 'wf-b' });

    assert.equal(a.counter, 2);
    assert.equal(b.counter, 3);
    assert.equal(b.owner, 'wf-b');
    assert.equal(b.ownerSwitchesSinceCheckpoint, 1);
    assert.deepEqual(b.checkpoint, { sequenceNumber: SEQ_1, subSequenceNumber: 0 }, 'claim keeps the checkpoint');
    assert.equal(bAgain.counter, 4);
    assert.equal(bAgain.ownerSwitchesSinceCheckpoint, 1);
    assert.deepEqual(await table.getLease(SHARD), bAgain);
  });

  test('concurrent claims all succeed one after another, each with its own counter', async () => {
    const { table } = await newTable();
    const owners = ['wf-1', 'wf-2', 'wf-3', 'wf-4', 'wf-5'];

    const leases = await Promise.all(owners.map((owner) => table.claim({ shardId: SHARD, owner })));

    assert.deepEqual(leases.map((l) => l.counter).sort(), [1, 2, 3, 4, 5]);
    const last = leases.find((l) => l.counter === 5);
    const stored = await table.getLease(SHARD);
    assert.equal(stored?.counter, 5);
    assert.equal(stored?.owner, last?.owner);
  });
});

describe('CheckpointTable.checkpoint', () => {
  test('with the current counter it writes the position, resets owner switches and increments the counter', async () => {
    const { table, tableName } = await newTable();
    await table.claim({ shardId: SHARD, owner: 'wf-a' });
    await table.claim({ shardId: SHARD, owner: 'wf-b' });

    const first = await table.checkpoint({
      shardId: SHARD,
      owner: 'wf-b',
      counter: 2,
      checkpoint: { sequenceNumber: SEQ_1 },
    });
    const second = await table.checkpoint({
      shardId: SHARD,
      owner: 'wf-b',
      counter: first.counter,
      checkpoint: { sequenceNumber: SEQ_2, subSequenceNumber: 4 },
    });

    assert.deepEqual(first, { counter: 3 });
    assert.deepEqual(second, { counter: 4 });
    const item = await rawItem(tableName, SHARD);
    assert.deepEqual(item?.checkpoint, { S: SEQ_2 });
    assert.deepEqual(item?.checkpointSubSequenceNumber, { N: '4' });
    assert.deepEqual(item?.leaseCounter, { N: '4' });
    assert.deepEqual(item?.ownerSwitchesSinceCheckpoint, { N: '0' });
    assert.deepEqual((await table.getLease(SHARD))?.checkpoint, { sequenceNumber: SEQ_2, subSequenceNumber: 4 });
  });

  test('a stale attempt with an older counter cannot overwrite a newer checkpoint or move it backwards', async () => {
    const { table, tableName } = await newTable();
    await table.claim({ shardId: SHARD, owner: 'wf-a' });
    await table.checkpoint({ shardId: SHARD, owner: 'wf-a', counter: 1, checkpoint: { sequenceNumber: SEQ_1 } });
    await table.checkpoint({ shardId: SHARD, owner: 'wf-a', counter: 2, checkpoint: { sequenceNumber: SEQ_3 } });

    const staleBackwards = table.checkpoint({
      shardId: SHARD,
      owner: 'wf-a',
      counter: 1,
      checkpoint: { sequenceNumber: SEQ_1, subSequenceNumber: 9 },
    });
    const staleForwards = table.checkpoint({
      shardId: SHARD,
      owner: 'wf-a',
      counter: 2,
      checkpoint: { sequenceNumber: SEQ_2 },
    });

    // Both handled at once: awaiting one first would leave the other's rejection unhandled if it came first.
    await Promise.all(
      (
        [
          [staleBackwards, 1],
          [staleForwards, 2],
        ] as const
      ).map(([attempt, counter]) =>
        assert.rejects(attempt, (error: unknown) => {
          assert.ok(error instanceof CheckpointConflictError);
          assert.equal(error.expectedCounter, counter);
          assert.equal(error.actualOwner, 'wf-a');
          assert.equal(error.actualCounter, 3);
          assert.match(error.message, /stale/);
          return true;
        }),
      ),
    );
    const item = await rawItem(tableName, SHARD);
    assert.deepEqual(item?.checkpoint, { S: SEQ_3 });
    assert.deepEqual(item?.checkpointSubSequenceNumber, { N: '0' });
    assert.deepEqual(item?.leaseCounter, { N: '3' });
  });

  test('an owner that lost the shard is rejected with CheckpointConflictError naming the new owner', async () => {
    const { table, tableName } = await newTable();
    await table.claim({ shardId: SHARD, owner: 'wf-a' });
    await table.checkpoint({ shardId: SHARD, owner: 'wf-a', counter: 1, checkpoint: { sequenceNumber: SEQ_1 } });
    await table.claim({ shardId: SHARD, owner: 'wf-b' });

    const attempt = table.checkpoint({
      shardId: SHARD,
      owner: 'wf-a',
      counter: 2,
      checkpoint: { sequenceNumber: SEQ_2 },
    });

    await assert.rejects(attempt, (error: unknown) => {
      assert.ok(error instanceof CheckpointConflictError);
      assert.ok(error instanceof KclError);
      assert.equal(error.name, 'CheckpointConflict');
      assert.equal(error.shardId, SHARD);
      assert.equal(error.expectedOwner, 'wf-a');
      assert.equal(error.expectedCounter, 2);
      assert.equal(error.actualOwner, 'wf-b');
      assert.equal(error.actualCounter, 3);
      assert.equal(
        error.message,
        `shard ${SHARD}: lease is owned by wf-b at counter 3, not by wf-a at counter 2; another consumer took this shard`,
      );
      return true;
    });
    const item = await rawItem(tableName, SHARD);
    assert.deepEqual(item?.checkpoint, { S: SEQ_1 });
    assert.deepEqual(item?.leaseOwner, { S: 'wf-b' });
    assert.deepEqual(item?.ownerSwitchesSinceCheckpoint, { N: '1' });
  });

  test('a checkpoint on a shard with no item is a conflict with no actual owner or counter', async () => {
    const { table } = await newTable();

    await assert.rejects(
      table.checkpoint({ shardId: SHARD, owner: 'wf-a', counter: 1, checkpoint: 'TRIM_HORIZON' }),
      (error: unknown) => {
        assert.ok(error instanceof CheckpointConflictError);
        assert.equal(error.actualOwner, undefined);
        assert.equal(error.actualCounter, undefined);
        assert.match(error.message, /lease no longer exists/);
        return true;
      },
    );
    assert.equal(await table.getLease(SHARD), undefined);
  });

  test('a retry of a checkpoint that already applied succeeds with the same counter; a different one does not', async () => {
    const { table, tableName } = await newTable();
    await table.claim({ shardId: SHARD, owner: 'wf-a' });
    const input = {
      shardId: SHARD,
      owner: 'wf-a',
      counter: 1,
      checkpoint: { sequenceNumber: SEQ_2, subSequenceNumber: 2 },
    };
    const applied = await table.checkpoint(input);

    const retried = await table.checkpoint(input);

    assert.deepEqual(applied, { counter: 2 });
    assert.deepEqual(retried, { counter: 2 });
    assert.deepEqual((await rawItem(tableName, SHARD))?.leaseCounter, { N: '2' });
    await assert.rejects(
      table.checkpoint({ ...input, checkpoint: { sequenceNumber: SEQ_2, subSequenceNumber: 3 } }),
      CheckpointConflictError,
    );
    await assert.rejects(
      table.checkpoint({ ...input, checkpoint: { sequenceNumber: SEQ_1, subSequenceNumber: 2 } }),
      CheckpointConflictError,
    );
  });

  test('SHARD_END with childShardIds stores the sentinel, sub-sequence 0 and the children as a string set', async () => {
    const { table, tableName } = await newTable();
    await table.claim({ shardId: SHARD, owner: 'wf-a' });
    await table.checkpoint({
      shardId: SHARD,
      owner: 'wf-a',
      counter: 1,
      checkpoint: { sequenceNumber: SEQ_1, subSequenceNumber: 7 },
    });

    const done = await table.checkpoint({
      shardId: SHARD,
      owner: 'wf-a',
      counter: 2,
      checkpoint: 'SHARD_END',
      childShardIds: ['shardId-000000000003', 'shardId-000000000002'],
    });

    assert.deepEqual(done, { counter: 3 });
    const item = await rawItem(tableName, SHARD);
    assert.deepEqual(item?.checkpoint, { S: 'SHARD_END' });
    assert.deepEqual(item?.checkpointSubSequenceNumber, { N: '0' });
    assert.deepEqual([...(item?.childShardIds?.SS ?? [])].sort(), ['shardId-000000000002', 'shardId-000000000003']);
    const lease = await table.getLease(SHARD);
    assert.equal(lease?.checkpoint, 'SHARD_END');
    assert.deepEqual(lease?.childShardIds, ['shardId-000000000002', 'shardId-000000000003']);
  });

  test('input KCL could not read is refused before anything is written', async () => {
    const { table, tableName } = await newTable();
    await table.claim({ shardId: SHARD, owner: 'wf-a' });
    const bad = [
      { sequenceNumber: '12ab' },
      { sequenceNumber: SEQ_1, subSequenceNumber: -1 },
      { sequenceNumber: SEQ_1, subSequenceNumber: 1.5 },
      'NOT_A_SENTINEL' as 'LATEST',
    ];

    for (const checkpoint of bad) {
      await assert.rejects(
        table.checkpoint({ shardId: SHARD, owner: 'wf-a', counter: 1, checkpoint }),
        (error: unknown) => error instanceof InvalidLeaseRequestError && error.name === 'InvalidLeaseRequest',
      );
    }
    await assert.rejects(table.claim({ shardId: SHARD, owner: '' }), InvalidLeaseRequestError);

    assert.deepEqual(await rawItem(tableName, SHARD), {
      leaseKey: { S: SHARD },
      leaseOwner: { S: 'wf-a' },
      leaseCounter: { N: '1' },
      ownerSwitchesSinceCheckpoint: { N: '0' },
    });
  });
});

describe('CheckpointTable.prepareCheckpoint', () => {
  test('writes pendingCheckpoint with its sub-sequence number, fenced, and leaves the checkpoint as it is', async () => {
    const { table, tableName } = await newTable();
    const claimed = await table.claim({ shardId: SHARD, owner: 'wf-a' });
    const checkpointed = await table.checkpoint({
      shardId: SHARD,
      owner: 'wf-a',
      counter: claimed.counter,
      checkpoint: { sequenceNumber: SEQ_1 },
    });

    const prepared = await table.prepareCheckpoint({
      shardId: SHARD,
      owner: 'wf-a',
      counter: checkpointed.counter,
      pendingCheckpoint: { sequenceNumber: SEQ_2, subSequenceNumber: 2 },
    });

    assert.deepEqual(prepared, { counter: checkpointed.counter + 1 });
    const item = await rawItem(tableName, SHARD);
    assert.deepEqual(item?.pendingCheckpoint, { S: SEQ_2 });
    assert.deepEqual(item?.pendingCheckpointSubSequenceNumber, { N: '2' });
    assert.deepEqual(item?.checkpoint, { S: SEQ_1 });
    assert.deepEqual(item?.leaseCounter, { N: String(prepared.counter) });
    const lease = await table.getLease(SHARD);
    assert.deepEqual(lease?.pendingCheckpoint, { sequenceNumber: SEQ_2, subSequenceNumber: 2 });
    assert.deepEqual(lease?.checkpoint, { sequenceNumber: SEQ_1, subSequenceNumber: 0 });
  });

  test('a checkpoint commits it: checkpoint = the pending position, pending attributes removed', async () => {
    const { table, tableName } = await newTable();
    const claimed = await table.claim({ shardId: SHARD, owner: 'wf-a' });
    const pendingCheckpoint = { sequenceNumber: SEQ_2, subSequenceNumber: 1 };
    const prepared = await table.prepareCheckpoint({
      shardId: SHARD,
      owner: 'wf-a',
      counter: claimed.counter,
      pendingCheckpoint,
    });

    await table.checkpoint({ shardId: SHARD, owner: 'wf-a', counter: prepared.counter, checkpoint: pendingCheckpoint });

    const item = await rawItem(tableName, SHARD);
    assert.deepEqual(item?.checkpoint, { S: SEQ_2 });
    assert.deepEqual(item?.checkpointSubSequenceNumber, { N: '1' });
    assert.equal(item?.pendingCheckpoint, undefined);
    assert.equal(item?.pendingCheckpointSubSequenceNumber, undefined);
    assert.equal((await table.getLease(SHARD))?.pendingCheckpoint, undefined);
  });

  test('an owner that lost the shard cannot prepare (CheckpointConflictError); a retry that applied succeeds', async () => {
    const { table, tableName } = await newTable();
    const a = await table.claim({ shardId: SHARD, owner: 'wf-a' });
    const pendingCheckpoint = { sequenceNumber: SEQ_1 };
    const first = await table.prepareCheckpoint({ shardId: SHARD, owner: 'wf-a', counter: a.counter, pendingCheckpoint });
    const retried = await table.prepareCheckpoint({
      shardId: SHARD,
      owner: 'wf-a',
      counter: a.counter,
      pendingCheckpoint,
    });
    assert.deepEqual(retried, first);
    await table.claim({ shardId: SHARD, owner: 'wf-b' });

    await assert.rejects(
      table.prepareCheckpoint({
        shardId: SHARD,
        owner: 'wf-a',
        counter: first.counter,
        pendingCheckpoint: { sequenceNumber: SEQ_2 },
      }),
      (error: unknown) => error instanceof CheckpointConflictError && error.actualOwner === 'wf-b',
    );
    assert.deepEqual((await rawItem(tableName, SHARD))?.pendingCheckpoint, { S: SEQ_1 });
  });
});

describe('CheckpointTable reads', () => {
  test('getLeases reads both parents of a merge consistently and omits shards without an item', async () => {
    const { table } = await newTable();
    const parents = ['shardId-000000000001', 'shardId-000000000002'];
    await table.claim({ shardId: parents[0]!, owner: 'wf-1' });
    await table.claim({ shardId: parents[1]!, owner: 'wf-2' });
    await table.checkpoint({ shardId: parents[0]!, owner: 'wf-1', counter: 1, checkpoint: 'SHARD_END' });

    const leases = await table.getLeases([...parents, 'shardId-000000000009', parents[0]!]);

    assert.deepEqual([...leases.keys()].sort(), parents);
    assert.equal(leases.get(parents[0]!)?.checkpoint, 'SHARD_END');
    assert.equal(leases.get(parents[0]!)?.counter, 2);
    assert.equal(leases.get(parents[1]!)?.checkpoint, undefined);
    assert.equal(leases.get(parents[1]!)?.owner, 'wf-2');
    assert.equal((await table.getLeases([])).size, 0);
  });

  test('getLeases and listLeases read more leases than one batch holds', async () => {
    const { table } = await newTable();
    const shardIds = Array.from({ length: 130 }, (_, i) => `shardId-${String(i).padStart(12, '0')}`);
    for (const shardId of shardIds) await table.claim({ shardId, owner: 'wf' });

    const leases = await table.getLeases(shardIds);
    const listed = await table.listLeases();

    assert.equal(leases.size, 130);
    assert.deepEqual(
      listed.map((l) => l.shardId),
      shardIds,
    );
    assert.ok(listed.every((l) => l.owner === 'wf' && l.counter === 1));
  });

  test('an item that cannot be read as a lease is reported with its shard and attribute', async () => {
    const { table, tableName } = await newTable();
    const cases: [string, string, Record<string, AttributeValue>][] = [
      ['shardId-000000000010', 'leaseCounter', { leaseCounter: { S: 'three' } }],
      ['shardId-000000000011', 'leaseCounter', { leaseCounter: { N: '1.5' } }],
      ['shardId-000000000012', 'checkpoint', { leaseCounter: { N: '1' }, checkpoint: { S: 'somewhere' } }],
      ['shardId-000000000013', 'parentShardId', { leaseCounter: { N: '1' }, parentShardId: { S: 'shardId-0' } }],
    ];
    for (const [shardId, , attributes] of cases) {
      await dynamoDb.send(
        new PutItemCommand({ TableName: tableName, Item: { leaseKey: { S: shardId }, ...attributes } }),
      );
    }

    for (const [shardId, attribute] of cases) {
      await assert.rejects(table.getLease(shardId), (error: unknown) => {
        assert.ok(error instanceof LeaseTableSchemaError);
        assert.equal(error.shardId, shardId);
        assert.equal(error.attribute, attribute);
        assert.match(error.message, new RegExp(`item ${shardId}: attribute ${attribute}`));
        return true;
      });
    }
    await assert.rejects(table.listLeases(), LeaseTableSchemaError);
  });
});

describe('a lease table written by Java KCL', () => {
  const pendingState = new Uint8Array([0x0a, 0x03, 0x01, 0x02, 0x03]);
  const kclItems: Record<string, AttributeValue>[] = [
    {
      leaseKey: { S: 'shardId-000000000001' },
      leaseOwner: { S: 'kcl-worker-7f3a' },
      leaseCounter: { N: '42' },
      checkpoint: { S: SEQ_1 },
      checkpointSubSequenceNumber: { N: '3' },
      ownerSwitchesSinceCheckpoint: { N: '2' },
      parentShardId: { SS: ['shardId-000000000000'] },
      pendingCheckpoint: { S: SEQ_2 },
      pendingCheckpointSubSequenceNumber: { N: '0' },
      pendingCheckpointState: { B: pendingState },
      startingHashKey: { S: '0' },
      endingHashKey: { S: '170141183460469231731687303715884105727' },
    },
    {
      leaseKey: { S: 'shardId-000000000000' },
      leaseOwner: { S: 'kcl-worker-1b2c' },
      leaseCounter: { N: '7' },
      checkpoint: { S: 'SHARD_END' },
      checkpointSubSequenceNumber: { N: '0' },
      ownerSwitchesSinceCheckpoint: { N: '0' },
      childShardIds: { SS: ['shardId-000000000001', 'shardId-000000000002'] },
      startingHashKey: { S: '0' },
      endingHashKey: { S: '340282366920938463463374607431768211455' },
    },
    {
      leaseKey: { S: 'shardId-000000000002' },
      leaseCounter: { N: '1' },
      checkpoint: { S: 'TRIM_HORIZON' },
      checkpointSubSequenceNumber: { N: '0' },
      ownerSwitchesSinceCheckpoint: { N: '0' },
      parentShardId: { SS: ['shardId-000000000000'] },
    },
  ];

  async function seededTable(): Promise<{ table: CheckpointTable; tableName: string }> {
    const tableName = uniqueName('kcl-app');
    await createForeignTable(tableName, [{ name: 'leaseKey', type: 'S', keyType: 'HASH' }]);
    for (const Item of kclItems) await dynamoDb.send(new PutItemCommand({ TableName: tableName, Item }));
    const table = new CheckpointTable({ dynamoDb, tableName });
    await table.ensureTable();
    return { table, tableName };
  }

  test('its leases read back with KCL positions, parents, children and hash key ranges', async () => {
    const { table } = await seededTable();

    const leases = await table.listLeases();

    assert.deepEqual(leases, [
      {
        shardId: 'shardId-000000000000',
        owner: 'kcl-worker-1b2c',
        counter: 7,
        checkpoint: 'SHARD_END',
        ownerSwitchesSinceCheckpoint: 0,
        parentShardIds: [],
        childShardIds: ['shardId-000000000001', 'shardId-000000000002'],
        hashKeyRange: { startingHashKey: '0', endingHashKey: '340282366920938463463374607431768211455' },
      },
      {
        shardId: 'shardId-000000000001',
        owner: 'kcl-worker-7f3a',
        counter: 42,
        checkpoint: { sequenceNumber: SEQ_1, subSequenceNumber: 3 },
        pendingCheckpoint: { sequenceNumber: SEQ_2, subSequenceNumber: 0 },
        ownerSwitchesSinceCheckpoint: 2,
        parentShardIds: ['shardId-000000000000'],
        childShardIds: [],
        hashKeyRange: { startingHashKey: '0', endingHashKey: '170141183460469231731687303715884105727' },
      },
      {
        shardId: 'shardId-000000000002',
        counter: 1,
        checkpoint: 'TRIM_HORIZON',
        ownerSwitchesSinceCheckpoint: 0,
        parentShardIds: ['shardId-000000000000'],
        childShardIds: [],
      },
    ]);
    assert.deepEqual(await table.getLease('shardId-000000000001'), leases[1]);
  });

  test('claim changes only the attributes it owns; a checkpoint also removes pendingCheckpoint*, as KCL does', async () => {
    const { table, tableName } = await seededTable();
    const [kclItem] = kclItems;
    assert.ok(kclItem);

    const claimed = await table.claim({ shardId: 'shardId-000000000001', owner: 'wf-temporal' });
    const written = await table.checkpoint({
      shardId: 'shardId-000000000001',
      owner: 'wf-temporal',
      counter: claimed.counter,
      checkpoint: { sequenceNumber: SEQ_3, subSequenceNumber: 5 },
    });

    assert.equal(claimed.counter, 43);
    assert.equal(claimed.ownerSwitchesSinceCheckpoint, 3);
    assert.deepEqual(claimed.checkpoint, { sequenceNumber: SEQ_1, subSequenceNumber: 3 });
    assert.deepEqual(written, { counter: 44 });
    const {
      pendingCheckpoint: _pending,
      pendingCheckpointSubSequenceNumber: _pendingSub,
      pendingCheckpointState: _pendingState,
      ...kept
    } = kclItem;
    assert.deepEqual(await rawItem(tableName, 'shardId-000000000001'), {
      ...kept,
      leaseOwner: { S: 'wf-temporal' },
      leaseCounter: { N: '44' },
      checkpoint: { S: SEQ_3 },
      checkpointSubSequenceNumber: { N: '5' },
      ownerSwitchesSinceCheckpoint: { N: '0' },
    });
  });
});

describe('CheckpointTable.release', () => {
  test('removes the owner, keeps the checkpoint and increments the counter; a repeated release is idempotent', async () => {
    const { table, tableName } = await newTable();
    await table.claim({ shardId: SHARD, owner: 'wf-a' });
    await table.checkpoint({ shardId: SHARD, owner: 'wf-a', counter: 1, checkpoint: { sequenceNumber: SEQ_1 } });

    const released = await table.release({ shardId: SHARD, owner: 'wf-a', counter: 2 });
    const repeated = await table.release({ shardId: SHARD, owner: 'wf-a', counter: 2 });

    assert.deepEqual(released, { counter: 3 });
    assert.deepEqual(repeated, { counter: 3 });
    const item = await rawItem(tableName, SHARD);
    assert.equal(item?.leaseOwner, undefined);
    assert.deepEqual(item?.leaseCounter, { N: '3' });
    assert.deepEqual(item?.checkpoint, { S: SEQ_1 });
    const next = await table.claim({ shardId: SHARD, owner: 'wf-b' });
    assert.equal(next.counter, 4);
    assert.equal(next.ownerSwitchesSinceCheckpoint, 0, 'taking an unowned lease is not an owner switch (as in KCL)');
  });

  test('returns undefined and changes nothing when another owner already holds the lease', async () => {
    const { table, tableName } = await newTable();
    await table.claim({ shardId: SHARD, owner: 'wf-a' });
    await table.claim({ shardId: SHARD, owner: 'wf-b' });

    const released = await table.release({ shardId: SHARD, owner: 'wf-a', counter: 1 });

    assert.equal(released, undefined);
    const item = await rawItem(tableName, SHARD);
    assert.deepEqual(item?.leaseOwner, { S: 'wf-b' });
    assert.deepEqual(item?.leaseCounter, { N: '2' });
    assert.equal(await table.release({ shardId: 'shardId-000000000999', owner: 'wf-a', counter: 1 }), undefined);
  });
});

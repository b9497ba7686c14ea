/**
 * `temporal-kcl import-checkpoints --from vmware-go-kcl`: a table seeded in vmware-go-kcl's exact format
 * (clientlibrary/checkpoint/dynamodb-checkpointer.go: hash key ShardID, Checkpoint, AssignedTo, LeaseTimeout in RFC 3339,
 * ParentShardId, a provisioned table) becomes KCL leases that temporal-kcl resumes from without re-delivering anything;
 * --dry-run writes nothing; a second run changes nothing; a live vmware-go-kcl lease stops it unless --force.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  CreateTableCommand,
  type DynamoDBClient,
  PutItemCommand,
  ScanCommand,
  waitUntilTableExists,
} from '@aws-sdk/client-dynamodb';
import { PutRecordCommand } from '@aws-sdk/client-kinesis';
import { startStreamConsumer } from '../../src/client/consumers';
import { streamConsumerWorkflowId } from '../../src/ids';
import { aggregate } from '../../src/kinesis/aggregate';
import { cliEnvironment, killAllCliProcesses, runCli } from '../helpers/cli';
import {
  createStream,
  kclTestContext,
  type KclTestContext,
  listShards,
  putRecords,
  recordingProcessor,
  testWorker,
} from '../helpers/kcl';
import { uniqueName } from '../helpers/stack';

/** vmware-go-kcl's LeaseTimeout: time.Format(time.RFC3339) of a UTC time, e.g. 2026-12-05T04:30:00Z. */
const rfc3339 = (date: Date) => date.toISOString().replace(/\.\d{3}Z$/, 'Z');

async function createVmwareTable(dynamoDb: DynamoDBClient, tableName: string): Promise<void> {
  // As vmware-go-kcl's createTable: ShardID (S) as the only key, provisioned throughput.
  await dynamoDb.send(
    new CreateTableCommand({
      TableName: tableName,
      AttributeDefinitions: [{ AttributeName: 'ShardID', AttributeType: 'S' }],
      KeySchema: [{ AttributeName: 'ShardID', KeyType: 'HASH' }],
      ProvisionedThroughput: { ReadCapacityUnits: 10, WriteCapacityUnits: 10 },
    }),
  );
  await waitUntilTableExists({ client: dynamoDb, maxWaitTime: 30, minDelay: 1 }, { TableName: tableName });
}

/** An item as vmware-go-kcl's CheckpointSequence writes it (a PutItem of these attributes). */
async function putVmwareItem(
  dynamoDb: DynamoDBClient,
  tableName: string,
  item: { shardId: string; checkpoint?: string; assignedTo: string; leaseTimeout: Date; parentShardId?: string },
): Promise<void> {
  await dynamoDb.send(
    new PutItemCommand({
      TableName: tableName,
      Item: {
        ShardID: { S: item.shardId },
        ...(item.checkpoint ? { Checkpoint: { S: item.checkpoint } } : {}),
        AssignedTo: { S: item.assignedTo },
        LeaseTimeout: { S: rfc3339(item.leaseTimeout) },
        ...(item.parentShardId ? { ParentShardId: { S: item.parentShardId } } : {}),
      },
    }),
  );
}

describe('temporal-kcl import-checkpoints --from vmware-go-kcl', () => {
  let context: KclTestContext;
  before(async () => {
    context = await kclTestContext();
  });
  after(async () => {
    await killAllCliProcesses();
    await context.close();
  });

  test('imports positions (an aggregate to its last user record), idempotently; temporal-kcl resumes after them', async () => {
    // Prepare: a stream with two shards; shard 0 got plain records, shard 1 a KPL aggregate of 3 user records.
    const { kinesis, dynamoDb } = context;
    const streamName = await createStream(kinesis, 2, 'vmware');
    const [shard0, shard1] = await listShards(kinesis, streamName);
    assert.ok(shard0?.ShardId && shard1?.ShardId && shard1.HashKeyRange?.StartingHashKey);
    const hashKeyOf1 = shard1.HashKeyRange.StartingHashKey;
    const hashKeyOf0 = shard0.HashKeyRange?.StartingHashKey ?? '0';
    const before0 = await putRecords(
      kinesis,
      streamName,
      ['old-0a', 'old-0b'].map((data) => ({ partitionKey: 'pk', data, explicitHashKey: hashKeyOf0 })),
    );
    const packed = aggregate(['old-1a', 'old-1b', 'old-1c'].map((data) => ({ partitionKey: 'pk', data })));
    const aggregated = await kinesis.send(
      new PutRecordCommand({
        StreamName: streamName,
        PartitionKey: packed.partitionKey,
        Data: packed.data,
        ExplicitHashKey: hashKeyOf1,
      }),
    );
    assert.equal(aggregated.ShardId, shard1.ShardId);
    const checkpoint0 = before0.at(-1)?.sequenceNumber ?? '';
    const checkpoint1 = aggregated.SequenceNumber ?? '';

    // vmware-go-kcl's table, its workers stopped (leases timed out a minute ago).
    const applicationName = uniqueName('vmware-app');
    const vmwareTable = uniqueName('vmware-table');
    const leaseTable = `${applicationName}-kcl`;
    await createVmwareTable(dynamoDb, vmwareTable);
    const expired = new Date(Date.now() - 60_000);
    await putVmwareItem(dynamoDb, vmwareTable, {
      shardId: shard0.ShardId,
      checkpoint: checkpoint0,
      assignedTo: 'go-worker-a',
      leaseTimeout: expired,
    });
    await putVmwareItem(dynamoDb, vmwareTable, {
      shardId: shard1.ShardId,
      checkpoint: checkpoint1,
      assignedTo: 'go-worker-b',
      leaseTimeout: expired,
    });
    // GetLease writes a lease before any checkpoint: nothing to import for it.
    await putVmwareItem(dynamoDb, vmwareTable, {
      shardId: 'shardId-000000000009',
      assignedTo: 'go-worker-a',
      leaseTimeout: expired,
      parentShardId: shard0.ShardId,
    });
    const env = cliEnvironment(context.stack, { TEMPORAL_KCL_TASK_QUEUE: uniqueName('vmware-tq') });
    const args = [
      'import-checkpoints',
      '--from',
      'vmware-go-kcl',
      '--table',
      vmwareTable,
      '--app',
      applicationName,
      '--stream',
      streamName,
      '--lease-table',
      leaseTable,
    ];
    const leaseItems = async () =>
      ((await dynamoDb.send(new ScanCommand({ TableName: leaseTable, ConsistentRead: true }))).Items ?? []).sort(
        (a, b) => ((a.leaseKey?.S ?? '') < (b.leaseKey?.S ?? '') ? -1 : 1),
      );

    // Act + Assess: --dry-run plans and writes nothing.
    const dry = await runCli([...args, '--dry-run'], env);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, new RegExp(`${shard0.ShardId}: ${checkpoint0} -> ${checkpoint0}/0  would create`));
    assert.match(
      dry.stdout,
      new RegExp(
        `${shard1.ShardId}: ${checkpoint1} -> ${checkpoint1}/2  would create \\(a KPL aggregate of 3 user records\\)`,
      ),
    );
    assert.match(
      dry.stdout,
      /dry run, nothing written: 2 to create, 0 unchanged, 0 conflicting, 1 without a checkpoint/,
    );
    const tables = await runCli([...args, '--dry-run'], env);
    assert.equal(tables.code, 0);

    // The import.
    const run = await runCli(args, env);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /2 created, 0 unchanged, 0 conflicting, 1 without a checkpoint/);
    assert.deepEqual(await leaseItems(), [
      {
        leaseKey: { S: shard0.ShardId },
        leaseCounter: { N: '0' },
        checkpoint: { S: checkpoint0 },
        checkpointSubSequenceNumber: { N: '0' },
        ownerSwitchesSinceCheckpoint: { N: '0' },
      },
      {
        leaseKey: { S: shard1.ShardId },
        leaseCounter: { N: '0' },
        checkpoint: { S: checkpoint1 },
        checkpointSubSequenceNumber: { N: '2' },
        ownerSwitchesSinceCheckpoint: { N: '0' },
      },
    ]);

    // Idempotent: a second run writes nothing.
    const again = await runCli(args, env);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /0 created, 2 unchanged, 0 conflicting/);

    // temporal-kcl resumes after the imported positions: only the new records arrive, even with TRIM_HORIZON.
    const taskQueue = uniqueName('vmware-worker-tq');
    const { factory, recording } = recordingProcessor();
    const worker = await testWorker(context, { processors: { default: factory }, taskQueue });
    await worker.runUntil(
      (async () => {
        await startStreamConsumer(context.client, {
          applicationName,
          streamName,
          taskQueue,
          tableName: leaseTable,
          shardOptions: { initialPosition: 'TRIM_HORIZON' },
        });
        await putRecords(kinesis, streamName, [
          { partitionKey: 'pk', data: 'new-0', explicitHashKey: hashKeyOf0 },
          { partitionKey: 'pk', data: 'new-1', explicitHashKey: hashKeyOf1 },
        ]);
        await recording.until((r) => r.records.length >= 2);
        await new Promise((resolve) => setTimeout(resolve, 1_500)); // anything re-delivered would show by now
        assert.deepEqual(recording.records.map((r) => r.text).sort(), ['new-0', 'new-1']);
        await context.client.workflow
          .getHandle(streamConsumerWorkflowId(applicationName, streamName))
          .terminate('done');
      })(),
    );
  });

  test('a live vmware-go-kcl lease stops the import, naming its owner, unless --force; a KCL table is refused', async () => {
    const { dynamoDb } = context;
    const streamName = await createStream(context.kinesis, 1, 'vmware-live');
    const vmwareTable = uniqueName('vmware-live');
    await createVmwareTable(dynamoDb, vmwareTable);
    await putVmwareItem(dynamoDb, vmwareTable, {
      shardId: 'shardId-000000000000',
      checkpoint: 'SHARD_END',
      assignedTo: 'go-worker-alive',
      leaseTimeout: new Date(Date.now() + 60_000),
    });
    const env = cliEnvironment(context.stack);
    const args = [
      'import-checkpoints',
      '--from',
      'vmware-go-kcl',
      '--table',
      vmwareTable,
      '--app',
      uniqueName('live-app'),
      '--stream',
      streamName,
    ];

    const refused = await runCli(args, env);
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr,
      /shard shardId-000000000000 is held by a live worker, go-worker-alive \(vmware-go-kcl LeaseTimeout \S+ has not passed\)/,
    );
    assert.match(refused.stderr, /--force/);

    const forced = await runCli([...args, '--force'], env);
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(forced.stdout, /shardId-000000000000: SHARD_END -> SHARD_END {2}created/);

    // A table that is not vmware-go-kcl's (here: the KCL lease table just written) is named as such.
    const leaseTable = args[args.indexOf('--app') + 1] ?? '';
    const wrong = await runCli(
      ['import-checkpoints', '--from', 'vmware-go-kcl', '--table', leaseTable, '--app', 'x', '--stream', streamName],
      env,
    );
    assert.equal(wrong.code, 1);
    assert.match(
      wrong.stderr,
      /is not a vmware-go-kcl checkpoint table: its key is leaseKey\/HASH, not ShardID \(it is a KCL lease table already/,
    );
  });
});

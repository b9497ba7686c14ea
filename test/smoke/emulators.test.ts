import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  ConditionalCheckFailedException,
  CreateTableCommand,
  GetItemCommand,
  PutItemCommand,
  waitUntilTableExists,
} from '@aws-sdk/client-dynamodb';
import {
  CreateStreamCommand,
  GetRecordsCommand,
  GetShardIteratorCommand,
  PutRecordCommand,
  waitUntilStreamExists,
} from '@aws-sdk/client-kinesis';
import { createDynamoDbClient, createKinesisClient } from '../../src/aws/clients';
import { testStack, uniqueName } from '../helpers/stack';

describe('AWS emulators through the project client factory', () => {
  test('PutRecord then GetRecords round-trips bytes through kinesis-local', async () => {
    const { aws } = await testStack();
    const kinesis = createKinesisClient(aws);
    try {
      const StreamName = uniqueName('smoke');
      await kinesis.send(new CreateStreamCommand({ StreamName, ShardCount: 1 }));
      await waitUntilStreamExists({ client: kinesis, maxWaitTime: 30, minDelay: 1 }, { StreamName });
      const data = new Uint8Array([0, 1, 2, 250, 255, ...Buffer.from('round trip')]);
      const put = await kinesis.send(new PutRecordCommand({ StreamName, PartitionKey: 'pk-1', Data: data }));
      const { ShardIterator } = await kinesis.send(
        new GetShardIteratorCommand({ StreamName, ShardId: put.ShardId, ShardIteratorType: 'TRIM_HORIZON' }),
      );
      const got = await kinesis.send(new GetRecordsCommand({ ShardIterator }));
      assert.equal(got.Records?.length, 1);
      const [record] = got.Records ?? [];
      assert.equal(record?.SequenceNumber, put.SequenceNumber);
      assert.equal(record?.PartitionKey, 'pk-1');
      assert.deepEqual(Buffer.from(record?.Data ?? []), Buffer.from(data));
      assert.ok(got.NextShardIterator, 'an open shard hands out a next iterator');
    } finally {
      kinesis.destroy();
    }
  });

  test('dynalite rejects a conditional write whose condition fails and keeps the item', async () => {
    const { aws } = await testStack();
    const dynamoDb = createDynamoDbClient(aws);
    try {
      const TableName = uniqueName('smoke');
      await dynamoDb.send(
        new CreateTableCommand({
          TableName,
          AttributeDefinitions: [{ AttributeName: 'leaseKey', AttributeType: 'S' }],
          KeySchema: [{ AttributeName: 'leaseKey', KeyType: 'HASH' }],
          BillingMode: 'PAY_PER_REQUEST',
        }),
      );
      await waitUntilTableExists({ client: dynamoDb, maxWaitTime: 30, minDelay: 1 }, { TableName });
      const item = { leaseKey: { S: 'shardId-000000000000' }, leaseCounter: { N: '1' } };
      await dynamoDb.send(
        new PutItemCommand({ TableName, Item: item, ConditionExpression: 'attribute_not_exists(leaseKey)' }),
      );
      await assert.rejects(
        dynamoDb.send(
          new PutItemCommand({
            TableName,
            Item: { ...item, leaseCounter: { N: '7' } },
            ConditionExpression: 'attribute_not_exists(leaseKey)',
          }),
        ),
        (error) => error instanceof ConditionalCheckFailedException,
      );
      const stored = await dynamoDb.send(
        new GetItemCommand({ TableName, Key: { leaseKey: item.leaseKey }, ConsistentRead: true }),
      );
      assert.equal(stored.Item?.leaseCounter?.N, '1');
    } finally {
      dynamoDb.destroy();
    }
  });
});

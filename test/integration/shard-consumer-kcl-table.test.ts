/**
 * Taking over from Java KCL: a lease table seeded item by item exactly as KCL's `DynamoDBLeaseSerializer` writes it,
 * with a checkpoint in the middle of each shard. The consumer resumes right after it (nothing before it delivered,
 * everything after it delivered) and writes its own checkpoints back in KCL's layout.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  type AttributeValue,
  CreateTableCommand,
  DescribeTableCommand,
  GetItemCommand,
  PutItemCommand,
} from '@aws-sdk/client-dynamodb';
import { DescribeStreamSummaryCommand, SplitShardCommand } from '@aws-sdk/client-kinesis';
import { stopSignal } from '../../src/workflows/shard-consumer';
import {
  createStream,
  firstShardId,
  kclTestContextForSuite,
  type KclTestContext,
  listShards,
  putRecords,
  recordingProcessor,
  startShardConsumer,
  testWorker,
} from '../helpers/kcl';
import { aggregate } from '../helpers/records';
import { uniqueName } from '../helpers/stack';

const MAX_HASH_KEY = (2n ** 128n - 1n).toString();
const KCL_WORKER = 'kcl-java-worker-7f3e9c2a-0d1b-4c55-9a61-2b8f0e4d3c71';

interface Put {
  sequenceNumber: string;
  subSequenceNumber?: number;
  text: string;
}

/** One lease item as Java KCL 2.x writes it for a shard without parents, checkpointed at `seq`/`sub`. */
function kclLeaseItem(
  shardId: string,
  checkpoint: { sequenceNumber: string; subSequenceNumber: number },
  hashKeyRange: { startingHashKey: string; endingHashKey: string },
): Record<string, AttributeValue> {
  return {
    leaseKey: { S: shardId },
    leaseOwner: { S: KCL_WORKER },
    leaseCounter: { N: '42' },
    checkpoint: { S: checkpoint.sequenceNumber },
    checkpointSubSequenceNumber: { N: String(checkpoint.subSequenceNumber) },
    ownerSwitchesSinceCheckpoint: { N: '0' },
    startingHashKey: { S: hashKeyRange.startingHashKey },
    endingHashKey: { S: hashKeyRange.endingHashKey },
  };
}

/** Creates the lease table as KCL does (hash key leaseKey S, on demand) and waits until it is ACTIVE. */
async function createKclLeaseTable(context: KclTestContext, tableName: string): Promise<void> {
  await context.dynamoDb.send(
    new CreateTableCommand({
      TableName: tableName,
      AttributeDefinitions: [{ AttributeName: 'leaseKey', AttributeType: 'S' }],
      KeySchema: [{ AttributeName: 'leaseKey', KeyType: 'HASH' }],
      BillingMode: 'PAY_PER_REQUEST',
    }),
  );
  for (let i = 0; ; i++) {
    const { Table } = await context.dynamoDb.send(new DescribeTableCommand({ TableName: tableName }));
    if (Table?.TableStatus === 'ACTIVE') return;
    assert.ok(i < 200, 'lease table becomes ACTIVE');
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function getItem(context: KclTestContext, tableName: string, shardId: string) {
  const { Item } = await context.dynamoDb.send(
    new GetItemCommand({ TableName: tableName, Key: { leaseKey: { S: shardId } }, ConsistentRead: true }),
  );
  assert.ok(Item, `lease of ${shardId}`);
  return Item;
}

function consumerInput(applicationName: string, streamName: string, shardId: string) {
  return {
    applicationName,
    streamName,
    shardId,
    processor: 'recorder',
    options: {
      initialPosition: 'LATEST' as const,
      maxRecords: 4,
      idleTimeBetweenReadsMs: 200,
      parentShardPollIntervalMs: 200,
    },
  };
}

describe('ShardConsumerWorkflow on a lease table written by Java KCL', () => {
  const context = kclTestContextForSuite();

  test('resumes right after a plain-record checkpoint (sub 0) and after an aggregate checkpoint (sub N)', async () => {
    // Prepare: shard 0 holds plain records, shard 1 plain records around two aggregates.
    const streamName = await createStream(context.kinesis, 2);
    const applicationName = uniqueName('app');
    const taskQueue = uniqueName('tq');
    const shards = await listShards(context.kinesis, streamName);
    const [plainShard, aggShard] = shards as [(typeof shards)[number], (typeof shards)[number]];
    const plainShardId = plainShard.ShardId!;
    const aggShardId = aggShard.ShardId!;

    const onPlain: Put[] = [];
    for (let i = 0; i < 10; i++) {
      const [put] = await putRecords(context.kinesis, streamName, [
        { partitionKey: `p${i}`, data: `plain-${i}`, explicitHashKey: '0' },
      ]);
      assert.equal(put?.shardId, plainShardId);
      onPlain.push({ sequenceNumber: put.sequenceNumber, text: `plain-${i}` });
    }
    const onAgg: Put[] = [];
    const putOnAgg = async (texts: string[]) => {
      const record =
        texts.length === 1
          ? { partitionKey: texts[0]!, data: texts[0]!, explicitHashKey: MAX_HASH_KEY }
          : {
              ...aggregate(texts.map((text) => ({ partitionKey: text, data: text, explicitHashKey: MAX_HASH_KEY }))),
            };
      const [put] = await putRecords(context.kinesis, streamName, [record]);
      assert.equal(put?.shardId, aggShardId);
      texts.forEach((text, i) =>
        onAgg.push({
          sequenceNumber: put.sequenceNumber,
          ...(texts.length > 1 ? { subSequenceNumber: i } : {}),
          text,
        }),
      );
    };
    await putOnAgg(['q0']);
    await putOnAgg(['a0', 'a1', 'a2', 'a3', 'a4', 'a5']);
    await putOnAgg(['q1']);
    await putOnAgg(['b0', 'b1', 'b2']);
    await putOnAgg(['q2']);

    // The lease table as Java KCL leaves it: plain shard checkpointed at plain-4 (sub 0), the other at a3 (sub 3).
    const plainCheckpoint = onPlain[4]!;
    const aggCheckpoint = onAgg.find((p) => p.text === 'a3')!;
    await createKclLeaseTable(context, applicationName);
    await context.dynamoDb.send(
      new PutItemCommand({
        TableName: applicationName,
        Item: kclLeaseItem(
          plainShardId,
          { sequenceNumber: plainCheckpoint.sequenceNumber, subSequenceNumber: 0 },
          {
            startingHashKey: plainShard.HashKeyRange!.StartingHashKey!,
            endingHashKey: plainShard.HashKeyRange!.EndingHashKey!,
          },
        ),
      }),
    );
    await context.dynamoDb.send(
      new PutItemCommand({
        TableName: applicationName,
        Item: kclLeaseItem(
          aggShardId,
          { sequenceNumber: aggCheckpoint.sequenceNumber, subSequenceNumber: 3 },
          {
            startingHashKey: aggShard.HashKeyRange!.StartingHashKey!,
            endingHashKey: aggShard.HashKeyRange!.EndingHashKey!,
          },
        ),
      }),
    );
    const { factory, recording } = recordingProcessor();
    const worker = await testWorker(context, { processors: { recorder: factory }, taskQueue });
    const expectedPlain = onPlain.slice(5);
    const expectedAgg = onAgg.slice(onAgg.indexOf(aggCheckpoint) + 1);

    // Act: consumers for both shards; LATEST as initial position must not matter, the checkpoint wins.
    await worker.runUntil(
      (async () => {
        const handles = await Promise.all(
          [plainShardId, aggShardId].map((shardId) =>
            startShardConsumer(context, { taskQueue, ...consumerInput(applicationName, streamName, shardId) }),
          ),
        );
        await recording.until((r) => r.records.length >= expectedPlain.length + expectedAgg.length);
        await new Promise((r) => setTimeout(r, 1_000));
        for (const handle of handles) {
          await handle.signal(stopSignal);
          assert.equal((await handle.result()).reason, 'REQUESTED');
        }
      })(),
    );

    // Assess: exactly what follows each checkpoint, in order.
    const seen = (shardId: string) =>
      recording.records
        .filter((r) => r.shardId === shardId)
        .map((r) => `${r.text}@${r.sequenceNumber}/${r.subSequenceNumber ?? '-'}`);
    const positions = (puts: Put[]) => puts.map((p) => `${p.text}@${p.sequenceNumber}/${p.subSequenceNumber ?? '-'}`);
    assert.deepEqual(seen(plainShardId), positions(expectedPlain));
    assert.deepEqual(seen(aggShardId), positions(expectedAgg));
    assert.equal(recording.records.find((r) => r.shardId === aggShardId)?.text, 'a4');
    const initialized = Object.fromEntries(
      recording.events.filter((e) => e.kind === 'initialize').map((e) => [e.shardId, e.detail]),
    );
    assert.deepEqual(initialized, {
      [plainShardId]: { sequenceNumber: plainCheckpoint.sequenceNumber, subSequenceNumber: 0 },
      [aggShardId]: { sequenceNumber: aggCheckpoint.sequenceNumber, subSequenceNumber: 3 },
    });

    // The items are still what KCL reads: same attribute names and types, the new checkpoint, a higher counter.
    for (const [shardId, last] of [
      [plainShardId, expectedPlain.at(-1)!],
      [aggShardId, expectedAgg.at(-1)!],
    ] as const) {
      const Item = await getItem(context, applicationName, shardId);
      assert.deepEqual(Item.checkpoint, { S: last.sequenceNumber });
      assert.deepEqual(Item.checkpointSubSequenceNumber, { N: '0' });
      assert.deepEqual(Item.ownerSwitchesSinceCheckpoint, { N: '0' });
      assert.ok(Item.leaseCounter?.N !== undefined && Number(Item.leaseCounter.N) > 42, 'the counter moved on');
      assert.equal(Item.leaseOwner, undefined, 'the stopped consumer released the lease');
      assert.equal(Item.parentShardId, undefined, 'no parents, no parentShardId');
      for (const attribute of Object.keys(Item)) {
        assert.ok(
          [
            'leaseKey',
            'leaseCounter',
            'checkpoint',
            'checkpointSubSequenceNumber',
            'ownerSwitchesSinceCheckpoint',
            'startingHashKey',
            'endingHashKey',
            // KCL 3.x's own per-lease load, which the worker reported (the rest of its report went with the release).
            'throughputKBps',
          ].includes(attribute),
          `unexpected attribute ${attribute}`,
        );
      }
    }
  });

  test('after a split KCL finished: parent at SHARD_END is not read again; children resume from their KCL leases', async () => {
    // Prepare: records in a shard, split it, records in both children.
    const streamName = await createStream(context.kinesis, 1);
    const applicationName = uniqueName('app');
    const taskQueue = uniqueName('tq');
    const [parent] = await listShards(context.kinesis, streamName);
    const parentId = parent!.ShardId!;
    await putRecords(
      context.kinesis,
      streamName,
      [0, 1, 2].map((i) => ({ partitionKey: `p${i}`, data: `parent-${i}` })),
    );
    await context.kinesis.send(
      new SplitShardCommand({
        StreamName: streamName,
        ShardToSplit: parentId,
        NewStartingHashKey: (2n ** 127n).toString(),
      }),
    );
    for (let i = 0; ; i++) {
      const summary = await context.kinesis.send(new DescribeStreamSummaryCommand({ StreamName: streamName }));
      if (summary.StreamDescriptionSummary?.StreamStatus === 'ACTIVE') break;
      assert.ok(i < 200, 'stream becomes ACTIVE after the split');
      await new Promise((r) => setTimeout(r, 25));
    }
    const shards = await listShards(context.kinesis, streamName);
    const children = shards.filter((s) => s.ParentShardId === parentId);
    assert.equal(children.length, 2);
    const [lower, upper] = children.sort((a, b) =>
      BigInt(a.HashKeyRange!.StartingHashKey!) < BigInt(b.HashKeyRange!.StartingHashKey!) ? -1 : 1,
    ) as [(typeof shards)[number], (typeof shards)[number]];
    const putInto = async (shard: typeof lower, explicitHashKey: string) => {
      const puts: Put[] = [];
      for (let i = 0; i < 4; i++) {
        const text = `${shard.ShardId}-${i}`;
        const [put] = await putRecords(context.kinesis, streamName, [
          { partitionKey: text, data: text, explicitHashKey },
        ]);
        assert.ok(put, 'PutRecord answered');
        assert.equal(put.shardId, shard.ShardId);
        puts.push({ sequenceNumber: put.sequenceNumber, text });
      }
      return puts;
    };
    const onLower = await putInto(lower, '0');
    const onUpper = await putInto(upper, MAX_HASH_KEY);

    // The table as KCL leaves it: the parent finished (SHARD_END, childShardIds); the lower child checkpointed at its
    // second record; the upper child as KCL's shard sync creates it (TRIM_HORIZON, unowned, parentShardId).
    await createKclLeaseTable(context, applicationName);
    const hashKeys = (shard: typeof lower) => ({
      startingHashKey: { S: shard.HashKeyRange!.StartingHashKey! },
      endingHashKey: { S: shard.HashKeyRange!.EndingHashKey! },
    });
    const items: Record<string, AttributeValue>[] = [
      {
        leaseKey: { S: parentId },
        leaseOwner: { S: KCL_WORKER },
        leaseCounter: { N: '17' },
        checkpoint: { S: 'SHARD_END' },
        checkpointSubSequenceNumber: { N: '0' },
        ownerSwitchesSinceCheckpoint: { N: '0' },
        childShardIds: { SS: [lower.ShardId!, upper.ShardId!] },
        ...hashKeys(parent!),
      },
      {
        leaseKey: { S: lower.ShardId! },
        leaseOwner: { S: KCL_WORKER },
        leaseCounter: { N: '9' },
        checkpoint: { S: onLower[1]!.sequenceNumber },
        checkpointSubSequenceNumber: { N: '0' },
        ownerSwitchesSinceCheckpoint: { N: '0' },
        parentShardId: { SS: [parentId] },
        ...hashKeys(lower),
      },
      {
        leaseKey: { S: upper.ShardId! },
        leaseCounter: { N: '0' },
        checkpoint: { S: 'TRIM_HORIZON' },
        checkpointSubSequenceNumber: { N: '0' },
        ownerSwitchesSinceCheckpoint: { N: '0' },
        parentShardId: { SS: [parentId] },
        ...hashKeys(upper),
      },
    ];
    for (const Item of items) {
      await context.dynamoDb.send(new PutItemCommand({ TableName: applicationName, Item }));
    }
    const { factory, recording } = recordingProcessor();
    const worker = await testWorker(context, { processors: { recorder: factory }, taskQueue });

    // Act: a consumer per shard, parents looked up with ListShards.
    const results = await worker.runUntil(
      (async () => {
        const start = (shardId: string) =>
          startShardConsumer(context, { taskQueue, ...consumerInput(applicationName, streamName, shardId) });
        const parentResult = await (await start(parentId)).result();
        const handles = [await start(lower.ShardId!), await start(upper.ShardId!)];
        await recording.until((r) => r.records.length >= 2 + onUpper.length);
        await new Promise((r) => setTimeout(r, 1_000));
        const childResults = [];
        for (const handle of handles) {
          await handle.signal(stopSignal);
          childResults.push(await handle.result());
        }
        return [parentResult, ...childResults];
      })(),
    );

    // Assess: nothing of the parent again; the lower child after its checkpoint; the upper child from its start.
    assert.deepEqual(
      results.map((r) => r.reason),
      ['ALREADY_ENDED', 'REQUESTED', 'REQUESTED'],
    );
    assert.equal(recording.events.filter((e) => e.shardId === parentId).length, 0, 'no processor for the parent');
    const seen = (shardId: string) =>
      recording.records.filter((r) => r.shardId === shardId).map((r) => `${r.text}@${r.sequenceNumber}`);
    const positions = (puts: Put[]) => puts.map((p) => `${p.text}@${p.sequenceNumber}`);
    assert.deepEqual(seen(lower.ShardId!), positions(onLower.slice(2)));
    assert.deepEqual(seen(upper.ShardId!), positions(onUpper));
    const parentItem = await getItem(context, applicationName, parentId);
    assert.deepEqual(parentItem.checkpoint, { S: 'SHARD_END' });
    assert.deepEqual(parentItem.childShardIds, { SS: [lower.ShardId!, upper.ShardId!] });
    for (const [child, puts] of [
      [lower, onLower],
      [upper, onUpper],
    ] as const) {
      const item = await getItem(context, applicationName, child.ShardId!);
      assert.deepEqual(item.checkpoint, { S: puts.at(-1)!.sequenceNumber });
      assert.deepEqual(item.checkpointSubSequenceNumber, { N: '0' });
      assert.deepEqual(item.parentShardId, { SS: [parentId] });
    }
  });

  test('a Java KCL worker takes the lease: the consumer ends as ZOMBIE and never overwrites its checkpoint', async () => {
    // Prepare: a consumer that checkpoints every batch has consumed the first records.
    const streamName = await createStream(context.kinesis, 1);
    const applicationName = uniqueName('app');
    const taskQueue = uniqueName('tq');
    const shardId = await firstShardId(context.kinesis, streamName);
    const first = await putRecords(
      context.kinesis,
      streamName,
      [0, 1, 2].map((i) => ({ partitionKey: `k${i}`, data: `before-${i}` })),
    );
    const { factory, recording } = recordingProcessor();
    const worker = await testWorker(context, { processors: { recorder: factory }, taskQueue });

    const result = await worker.runUntil(
      (async () => {
        const handle = await startShardConsumer(context, {
          taskQueue,
          ...consumerInput(applicationName, streamName, shardId),
          options: { initialPosition: 'TRIM_HORIZON' as const, idleTimeBetweenReadsMs: 200 },
        });
        await recording.until((r) => r.records.length >= first.length);
        const checkpointed = { S: first.at(-1)!.sequenceNumber };
        for (let i = 0; (await getItem(context, applicationName, shardId)).checkpoint?.S !== checkpointed.S; i++) {
          assert.ok(i < 100, 'the first records are checkpointed');
          await new Promise((r) => setTimeout(r, 50));
        }

        // Act: a KCL worker takes the lease as KCL does (new owner, counter + 1, one more owner switch), then more
        // records arrive; the consumer's next checkpoint must find the lease gone.
        const stolen = await getItem(context, applicationName, shardId);
        await context.dynamoDb.send(
          new PutItemCommand({
            TableName: applicationName,
            Item: {
              ...stolen,
              leaseOwner: { S: KCL_WORKER },
              leaseCounter: { N: String(Number(stolen.leaseCounter!.N) + 1) },
              ownerSwitchesSinceCheckpoint: { N: '1' },
            },
          }),
        );
        await putRecords(context.kinesis, streamName, [{ partitionKey: 'k3', data: 'after-3' }]);
        return handle.result();
      })(),
    );

    // Assess: the consumer ended as a zombie, told its processor so, and left the KCL worker's lease alone.
    assert.equal(result.reason, 'ZOMBIE');
    assert.deepEqual(
      recording.shutdowns.map((s) => s.reason),
      ['ZOMBIE'],
    );
    const item = await getItem(context, applicationName, shardId);
    assert.deepEqual(item.leaseOwner, { S: KCL_WORKER });
    assert.deepEqual(item.checkpoint, { S: first.at(-1)!.sequenceNumber });
    assert.deepEqual(item.ownerSwitchesSinceCheckpoint, { N: '1' });
  });
});

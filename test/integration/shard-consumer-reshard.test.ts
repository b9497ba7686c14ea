/**
 * Split and merge while consuming: one ShardConsumerWorkflow per shard, started by the test as shards appear (there is
 * no stream-level workflow in this test). Children wait for every parent; per partition key, records arrive in the
 * order they were put, across parent and child shards.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type KinesisClient, MergeShardsCommand, type Shard, SplitShardCommand } from '@aws-sdk/client-kinesis';
import type { WorkflowHandle } from '@temporalio/client';
import { CheckpointTable } from '../../src/checkpoint/checkpoint-table';
import type { ShardConsumerResult } from '../../src/consumer-types';
import { progressQuery, type shardConsumerWorkflow, stopSignal } from '../../src/workflows/shard-consumer';
import {
  createStream,
  kclTestContextForSuite,
  listShards,
  putRecords,
  recordingProcessor,
  startShardConsumer,
  testWorker,
  waitUntilActive,
} from '../helpers/kcl';
import { uniqueName } from '../helpers/stack';

const PARTITION_KEYS = 32;

function parentsOf(shard: Shard): string[] {
  return [shard.ParentShardId, shard.AdjacentParentShardId].filter((id): id is string => Boolean(id));
}

/** Puts records with many partition keys, one at a time, until stopped; remembers the put order of each key. */
function startProducer(kinesis: KinesisClient, streamName: string) {
  const putOrder = new Map<string, string[]>();
  const shardsWritten = new Map<string, number>();
  let count = 0;
  let stopped = false;
  let failure: Error | undefined;
  const waiters: { atLeast: number; resolve: () => void }[] = [];
  const running = (async () => {
    try {
      while (!stopped) {
        const key = `key-${count % PARTITION_KEYS}`;
        const data = `${key}#${Math.floor(count / PARTITION_KEYS)}`;
        const [put] = await putRecords(kinesis, streamName, [{ partitionKey: key, data }]);
        putOrder.set(key, [...(putOrder.get(key) ?? []), data]);
        shardsWritten.set(put!.shardId, (shardsWritten.get(put!.shardId) ?? 0) + 1);
        count++;
        for (const waiter of waiters.filter((w) => count >= w.atLeast)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve();
        }
      }
    } catch (error) {
      failure = error instanceof Error ? error : new Error(String(error));
      for (const waiter of waiters.splice(0)) waiter.resolve();
    }
  })();
  return {
    putOrder,
    shardsWritten,
    get count() {
      return count;
    },
    /** Resolves once `more` further records have been put. */
    async putMore(more: number): Promise<void> {
      await new Promise<void>((resolve) => waiters.push({ atLeast: count + more, resolve }));
      if (failure) throw failure;
    },
    async stop(): Promise<void> {
      stopped = true;
      await running;
      if (failure) throw failure;
    },
  };
}

describe('ShardConsumerWorkflow across a split and a merge', () => {
  const context = kclTestContextForSuite();

  test('children wait for their parents; per key, delivery follows put order; parents end at SHARD_END', async () => {
    // Prepare: a two-shard stream, a producer that never pauses, and a processor whose parent shards are held back
    // until every child consumer has been started (so the children must really wait).
    const streamName = await createStream(context.kinesis, 2);
    const applicationName = uniqueName('app');
    const taskQueue = uniqueName('tq');
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    const gated = new Set<string>();
    const { factory, recording } = recordingProcessor({
      onBatch: async (_input, shardId) => {
        if (gated.has(shardId)) await gate;
      },
    });
    const worker = await testWorker(context, { processors: { recorder: factory }, taskQueue });
    const table = new CheckpointTable({ dynamoDb: context.dynamoDb, tableName: applicationName });
    const handles = new Map<string, WorkflowHandle<typeof shardConsumerWorkflow>>();
    const startConsumer = async (shard: Shard) => {
      const shardId = shard.ShardId!;
      handles.set(
        shardId,
        await startShardConsumer(context, {
          taskQueue,
          applicationName,
          streamName,
          shardId,
          processor: 'recorder',
          parentShardIds: parentsOf(shard),
          options: {
            initialPosition: 'TRIM_HORIZON',
            maxRecords: 10,
            idleTimeBetweenReadsMs: 200,
            parentShardPollIntervalMs: 200,
          },
        }),
      );
    };

    const results = new Map<string, ShardConsumerResult>();
    const childStates = new Map<string, string>();
    let produced = 0;
    let shardsWritten = new Map<string, number>();
    let putOrder = new Map<string, string[]>();

    await worker.runUntil(
      (async () => {
        const initial = await listShards(context.kinesis, streamName);
        assert.deepEqual(
          initial.map((s) => s.ShardId),
          ['shardId-000000000000', 'shardId-000000000001'],
        );
        for (const shard of initial) gated.add(shard.ShardId!);
        for (const shard of initial) await startConsumer(shard);
        const producer = startProducer(context.kinesis, streamName);

        // Act: split shard 0 in the middle of its range while records flow.
        await producer.putMore(60);
        const [shard0, shard1] = initial as [Shard, Shard];
        const start = BigInt(shard0.HashKeyRange!.StartingHashKey!);
        const end = BigInt(shard0.HashKeyRange!.EndingHashKey!);
        await context.kinesis.send(
          new SplitShardCommand({
            StreamName: streamName,
            ShardToSplit: shard0.ShardId,
            NewStartingHashKey: ((start + end) / 2n + 1n).toString(),
          }),
        );
        await waitUntilActive(context.kinesis, streamName);
        const afterSplit = await listShards(context.kinesis, streamName);
        const splitChildren = afterSplit.filter((s) => parentsOf(s).includes(shard0.ShardId!));
        assert.equal(splitChildren.length, 2);
        // The upper child is adjacent to shard 1: it is merged next, so it is a parent too.
        const [lower, upper] = splitChildren.sort((a, b) =>
          BigInt(a.HashKeyRange!.StartingHashKey!) < BigInt(b.HashKeyRange!.StartingHashKey!) ? -1 : 1,
        ) as [Shard, Shard];
        gated.add(upper.ShardId!);
        for (const child of splitChildren) await startConsumer(child);

        // Act: merge the split's upper child with shard 1 while records flow.
        await producer.putMore(60);
        await context.kinesis.send(
          new MergeShardsCommand({
            StreamName: streamName,
            ShardToMerge: upper.ShardId,
            AdjacentShardToMerge: shard1.ShardId,
          }),
        );
        await waitUntilActive(context.kinesis, streamName);
        const afterMerge = await listShards(context.kinesis, streamName);
        const merged = afterMerge.find((s) => parentsOf(s).includes(shard1.ShardId!));
        assert.ok(merged, 'the merge created a shard');
        assert.deepEqual(parentsOf(merged).sort(), [upper.ShardId, shard1.ShardId].sort());
        await startConsumer(merged);
        await producer.putMore(60);
        await producer.stop();
        produced = producer.count;
        shardsWritten = producer.shardsWritten;
        putOrder = producer.putOrder;

        // Every child consumer is waiting on its parents, whose processors are held back.
        for (const child of [lower, upper, merged]) {
          childStates.set(child.ShardId!, (await handles.get(child.ShardId!)!.query(progressQuery)).state);
        }
        openGate();

        // Parents end at the shard's end; then their children take over.
        for (const parent of [shard0, shard1, upper]) {
          results.set(parent.ShardId!, await handles.get(parent.ShardId!)!.result());
        }
        await recording.until((r) => r.records.length >= produced, 90_000);
        await new Promise((r) => setTimeout(r, 500));
        for (const open of [lower, merged]) {
          await handles.get(open.ShardId!)!.signal(stopSignal);
          results.set(open.ShardId!, await handles.get(open.ShardId!)!.result());
        }
      })(),
    );

    // Assess: every shard got records, so every consumer had something to order.
    const [s0, s1, s2, s3, s4] = [0, 1, 2, 3, 4].map((n) => `shardId-00000000000${n}`) as [
      string,
      string,
      string,
      string,
      string,
    ];
    for (const shardId of [s0, s1, s2, s3, s4]) {
      assert.ok(
        (shardsWritten.get(shardId) ?? 0) > 0,
        `records were put into ${shardId}: ${JSON.stringify([...shardsWritten])}`,
      );
    }
    // The children were waiting while their parents were held back.
    assert.deepEqual(Object.fromEntries(childStates), {
      [s2]: 'WAITING_ON_PARENT',
      [s3]: 'WAITING_ON_PARENT',
      [s4]: 'WAITING_ON_PARENT',
    });
    // All records delivered exactly once; per partition key in put order across parent and child shards.
    assert.equal(recording.records.length, produced);
    const delivered = new Map<string, string[]>();
    for (const record of recording.records) {
      delivered.set(record.partitionKey, [...(delivered.get(record.partitionKey) ?? []), record.text]);
    }
    assert.deepEqual(Object.fromEntries(delivered), Object.fromEntries(putOrder));
    // No child record before its parents' processors were shut down at the shard's end.
    const parentsByChild: Record<string, string[]> = { [s2]: [s0], [s3]: [s0], [s4]: [s3, s1] };
    for (const [child, parents] of Object.entries(parentsByChild)) {
      const firstDelivery = recording.events.findIndex((e) => e.shardId === child && e.kind === 'process');
      for (const parent of parents) {
        const parentEnd = recording.events.findIndex(
          (e) => e.shardId === parent && e.kind === 'shutdown' && e.detail === 'TERMINATE',
        );
        assert.ok(parentEnd >= 0, `${parent} was shut down with TERMINATE`);
        if (firstDelivery >= 0) assert.ok(firstDelivery > parentEnd, `${child} delivered before ${parent} ended`);
      }
    }
    // Parents end with TERMINATE and report their children; their leases are at SHARD_END with childShardIds.
    const expectedChildren: Record<string, string[]> = { [s0]: [s2, s3], [s1]: [s4], [s3]: [s4] };
    for (const [parent, children] of Object.entries(expectedChildren)) {
      const result = results.get(parent);
      assert.equal(result?.reason, 'TERMINATE', `${parent} ended with ${result?.reason}`);
      assert.deepEqual(result.childShards.map((c) => c.shardId).sort(), children);
      const lease = await table.getLease(parent);
      assert.equal(lease?.checkpoint, 'SHARD_END');
      assert.deepEqual(lease.childShardIds, children);
    }
    // Children record their parents; the open ones stop on request with the last delivered record checkpointed.
    assert.deepEqual((await table.getLease(s2))?.parentShardIds, [s0]);
    assert.deepEqual((await table.getLease(s3))?.parentShardIds, [s0]);
    assert.deepEqual((await table.getLease(s4))?.parentShardIds, [s1, s3]);
    for (const open of [s2, s4]) {
      assert.equal(results.get(open)?.reason, 'REQUESTED');
      const last = recording.records.filter((r) => r.shardId === open).at(-1);
      assert.deepEqual((await table.getLease(open))?.checkpoint, {
        sequenceNumber: last?.sequenceNumber,
        subSequenceNumber: 0,
      });
    }
    console.log(
      `[reshard] ${produced} records; per shard: ${[...shardsWritten].map(([s, n]) => `${s.slice(-2)}=${n}`).join(' ')}`,
    );
  });
});

/**
 * StreamConsumerWorkflow on the real local stack (kinesis-local): a 4-shard stream consumed through startStreamConsumer
 * while a producer writes numbered records under many partition keys; midway one shard is split and two adjacent shards
 * are merged. Every record arrives, per key in the order it was put (parents before children), each shard's consumer is
 * started exactly once, children start within seconds of the reshard, and a stop ends every consumer.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type KinesisClient, MergeShardsCommand, type Shard, SplitShardCommand } from '@aws-sdk/client-kinesis';
import type { Client } from '@temporalio/client';
import { startStreamConsumer, stopStreamConsumer } from '../../src/client/consumers';
import type { ShardConsumerResult } from '../../src/consumer-types';
import { shardConsumerWorkflowId, streamConsumerWorkflowId } from '../../src/ids';
import {
  createStream,
  kclTestContextForSuite,
  listShards,
  putRecords,
  recordingProcessor,
  testWorker,
  waitUntilActive,
} from '../helpers/kcl';
import { uniqueName } from '../helpers/stack';

const PARTITION_KEYS = 24;
/** A child consumer must start this soon after the reshard that created its shard. */
const CHILD_START_BOUND_MS = 5_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const isOpen = (shard: Shard) => shard.SequenceNumberRange?.EndingSequenceNumber === undefined;
const startKey = (shard: Shard) => BigInt(shard.HashKeyRange?.StartingHashKey ?? '-1');
const endKey = (shard: Shard) => BigInt(shard.HashKeyRange?.EndingHashKey ?? '-1');

/** Puts `key-i#n` records (n counting up per key) one at a time until stopped. */
function startProducer(kinesis: KinesisClient, streamName: string) {
  const produced: string[] = [];
  let stopped = false;
  const running = (async () => {
    for (let i = 0; !stopped; i++) {
      const key = `key-${i % PARTITION_KEYS}`;
      const data = `${key}#${Math.floor(i / PARTITION_KEYS)}`;
      await putRecords(kinesis, streamName, [{ partitionKey: key, data }]);
      produced.push(data);
      await sleep(5);
    }
  })();
  return {
    produced,
    async until(count: number, timeoutMs = 60_000): Promise<void> {
      const deadline = Date.now() + timeoutMs;
      while (produced.length < count) {
        if (Date.now() > deadline) throw new Error(`producer put only ${produced.length} of ${count} records`);
        await Promise.race([running, sleep(20)]);
      }
    },
    async stop(): Promise<void> {
      stopped = true;
      await running;
    },
  };
}

/** Executions (runs) per workflow id, once visibility has caught up with every id being closed. */
async function closedExecutions(client: Client, workflowIds: string[]): Promise<Map<string, string[]>> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const executions = new Map<string, string[]>();
    for (const workflowId of workflowIds) {
      const statuses: string[] = [];
      for await (const execution of client.workflow.list({ query: `WorkflowId = "${workflowId}"` })) {
        statuses.push(execution.status.name);
      }
      executions.set(workflowId, statuses);
    }
    const settled = [...executions.values()].every(
      (statuses) => statuses.length > 0 && statuses.every((status) => status !== 'RUNNING'),
    );
    if (settled || Date.now() > deadline) return executions;
    await sleep(250);
  }
}

describe('StreamConsumerWorkflow on the real local stack', () => {
  const context = kclTestContextForSuite();

  test('4 shards, a split and a merge while producing: every record, in key order, each shard consumed once', async (t) => {
    // Prepare
    const { kinesis, client } = context;
    const streamName = await createStream(kinesis, 4, 'stream-consumer');
    const applicationName = uniqueName('app');
    const taskQueue = uniqueName('tq');
    const { factory, recording } = recordingProcessor();
    const worker = await testWorker(context, { processors: { recorder: factory }, taskQueue });
    const original = await listShards(kinesis, streamName);
    assert.equal(original.length, 4);

    const reshardAt: Record<string, number> = {};
    let splitParent = '';
    let mergedParents: string[] = [];
    let result: Awaited<ReturnType<typeof stopStreamConsumer>>;
    const producer = startProducer(kinesis, streamName);

    // Act
    await worker.runUntil(
      (async () => {
        try {
          await startStreamConsumer(client, {
            applicationName,
            streamName,
            processor: 'recorder',
            taskQueue,
            shardSyncIntervalMs: 500,
            shardOptions: {
              initialPosition: 'TRIM_HORIZON',
              idleTimeBetweenReadsMs: 100,
              parentShardPollIntervalMs: 200,
              maxRecords: 25,
              // No continue-as-new in this test, so every workflow id has exactly one execution when all is well.
              maxBatchesPerRun: 100_000,
            },
          });
          await recording.until((r) => r.records.length >= 80, 60_000);

          // Split the first shard in the middle of its range.
          const toSplit = original[0]!;
          splitParent = toSplit.ShardId!;
          await kinesis.send(
            new SplitShardCommand({
              StreamName: streamName,
              ShardToSplit: splitParent,
              NewStartingHashKey: ((startKey(toSplit) + endKey(toSplit) + 1n) / 2n).toString(),
            }),
          );
          const splitDone = Date.now();
          await waitUntilActive(kinesis, streamName);
          await producer.until(producer.produced.length + 40);

          // Merge two adjacent open shards that the split did not touch.
          const open = (await listShards(kinesis, streamName))
            .filter((shard) => isOpen(shard) && !shard.ParentShardId)
            .sort((a, b) => (startKey(a) < startKey(b) ? -1 : 1));
          const pairAt = open.findIndex((shard, i) => {
            const next = open[i + 1];
            return next !== undefined && endKey(shard) + 1n === startKey(next);
          });
          assert.ok(pairAt >= 0, 'two adjacent open shards to merge');
          const [lower, upper] = [open[pairAt]!, open[pairAt + 1]!];
          mergedParents = [lower.ShardId!, upper.ShardId!];
          await kinesis.send(
            new MergeShardsCommand({
              StreamName: streamName,
              ShardToMerge: lower.ShardId!,
              AdjacentShardToMerge: upper.ShardId!,
            }),
          );
          const mergeDone = Date.now();
          await waitUntilActive(kinesis, streamName);

          for (const shard of await listShards(kinesis, streamName)) {
            if (shard.ParentShardId === splitParent && !shard.AdjacentParentShardId)
              reshardAt[shard.ShardId!] = splitDone;
            if (shard.AdjacentParentShardId) reshardAt[shard.ShardId!] = mergeDone;
          }
          // Keep producing after the reshard.
          await producer.until(producer.produced.length + 120);
        } finally {
          await producer.stop();
        }
        const expected = new Set(producer.produced);
        await recording.until((r) => new Set(r.records.map((record) => record.text)).size >= expected.size, 60_000);
        result = await stopStreamConsumer(client, { applicationName, streamName, wait: true });
      })(),
    );

    // Assess
    const shards = await listShards(kinesis, streamName);
    const children = Object.keys(reshardAt).sort();
    assert.equal(shards.length, 7, 'four shards, two split children, one merge child');
    assert.equal(children.length, 3, `children of the reshard: ${children.join(', ')}`);
    const parents = [splitParent, ...mergedParents].sort();

    // Every record delivered; no duplicates without failures.
    const delivered = recording.records.map((record) => record.text);
    const missing = producer.produced.filter((data) => !delivered.includes(data));
    assert.deepEqual(missing, [], 'every produced record delivered');
    const seen = new Set<string>();
    const duplicates = delivered.filter((data) => seen.has(data) || !seen.add(data));
    t.diagnostic(
      `${producer.produced.length} records produced, ${delivered.length} delivered, ${duplicates.length} twice`,
    );
    assert.deepEqual(duplicates, [], 'no record delivered twice');
    assert.equal(delivered.length, producer.produced.length);

    // Per partition key, numbers arrive in increasing order across parent and child shards.
    const lastNumber = new Map<string, number>();
    for (const record of recording.records) {
      const [key, n] = record.text.split('#') as [string, string];
      const number = Number(n);
      assert.ok(
        number > (lastNumber.get(key) ?? -1),
        `${record.text} (shard ${record.shardId}) after ${key}#${lastNumber.get(key)}`,
      );
      lastNumber.set(key, number);
    }
    for (const child of children) {
      assert.ok(
        recording.records.some((record) => record.shardId === child),
        `child shard ${child} delivered records`,
      );
    }

    // Each child consumer started within seconds of the reshard that created its shard.
    for (const child of children) {
      const description = await client.workflow
        .getHandle(shardConsumerWorkflowId(applicationName, streamName, child))
        .describe();
      const delay = description.startTime.getTime() - reshardAt[child]!;
      t.diagnostic(`consumer of ${child} started ${delay} ms after the reshard`);
      assert.ok(delay < CHILD_START_BOUND_MS, `consumer of ${child} started ${delay} ms after the reshard`);
    }

    // The stop ended every consumer: parents at shard end (TERMINATE), the rest on request; the stream completed.
    assert.equal(result!.started, 7);
    assert.deepEqual(result!.ended, { TERMINATE: 3, REQUESTED: 4 });
    /** Each consumer's result reason, or its status if it did not complete. */
    const reasons: Record<string, string> = {};
    for (const shard of shards) {
      const handle = client.workflow.getHandle<() => Promise<ShardConsumerResult>>(
        shardConsumerWorkflowId(applicationName, streamName, shard.ShardId!),
      );
      // The worker is gone: a consumer still running now would never end (result() would wait forever).
      const { status } = await handle.describe();
      reasons[shard.ShardId!] = status.name === 'COMPLETED' ? (await handle.result()).reason : status.name;
    }
    assert.deepEqual(
      reasons,
      Object.fromEntries(
        shards.map((shard) => [shard.ShardId!, parents.includes(shard.ShardId!) ? 'TERMINATE' : 'REQUESTED']),
      ),
    );
    const shutdowns = Object.fromEntries(
      shards.map((shard) => [
        shard.ShardId!,
        recording.shutdowns.filter((s) => s.shardId === shard.ShardId).map((s) => s.reason),
      ]),
    );
    assert.deepEqual(
      shutdowns,
      Object.fromEntries(
        shards.map((shard) => [shard.ShardId!, [parents.includes(shard.ShardId!) ? 'TERMINATE' : 'REQUESTED']]),
      ),
    );
    const stream = await client.workflow.getHandle(streamConsumerWorkflowId(applicationName, streamName)).describe();
    assert.equal(stream.status.name, 'COMPLETED');

    // Each shard's consumer was started exactly once: one execution per workflow id, and no other shard consumers.
    const shardWorkflowIds = shards.map((shard) =>
      shardConsumerWorkflowId(applicationName, streamName, shard.ShardId!),
    );
    const executions = await closedExecutions(client, shardWorkflowIds);
    assert.deepEqual(
      Object.fromEntries([...executions].map(([id, statuses]) => [id, statuses])),
      Object.fromEntries(shardWorkflowIds.map((id) => [id, ['COMPLETED']])),
    );
    const all = [];
    for await (const execution of client.workflow.list({
      query: `KclApplication = "${applicationName}" AND WorkflowType = "shardConsumerWorkflow"`,
    })) {
      all.push(execution.workflowId);
    }
    assert.deepEqual(all.sort(), [...shardWorkflowIds].sort());
  });
});

/**
 * A shard consumer stopped the hard way resumes from its durable checkpoint: a checkpoint in the middle of a KPL aggregate
 * resumes at the next user record of that aggregate; nothing checkpointed is delivered again, nothing is lost.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { CheckpointTable } from '../../src/checkpoint/checkpoint-table';
import type { ShardConsumerOptions } from '../../src/options';
import { progressQuery, stopSignal } from '../../src/workflows/shard-consumer';
import { killAllWorkerProcesses, startWorkerProcess } from '../helpers/child-worker';
import {
  createStream,
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

/** Small timeouts, so a dead worker is noticed within a second or two. */
const FAST: ShardConsumerOptions = {
  initialPosition: 'TRIM_HORIZON',
  maxRecords: 3,
  idleTimeBetweenReadsMs: 200,
  heartbeatTimeoutMs: 1_000,
  workerScheduleToStartTimeoutMs: 1_000,
};

/** A user record as the tests compare them: `text` is its data. */
interface Seen {
  sequenceNumber: string;
  subSequenceNumber?: number;
  text: string;
}

/**
 * Puts p0, p1, an aggregate of a0..a4, p2, an aggregate of b0..b2, p3 into a one-shard stream and returns the user
 * records in shard order, with their positions.
 */
async function putMixedRecords(context: KclTestContext, streamName: string, tag: string): Promise<Seen[]> {
  const expected: Seen[] = [];
  const putOne = async (record: { partitionKey: string; data: Uint8Array | string }) => {
    const [put] = await putRecords(context.kinesis, streamName, [record]);
    assert.ok(put, 'PutRecord answered');
    return put.sequenceNumber;
  };
  const put = async (texts: string[]) => {
    if (texts.length === 1) {
      const text = texts[0]!;
      expected.push({ sequenceNumber: await putOne({ partitionKey: `pk-${text}`, data: text }), text });
      return;
    }
    const sequenceNumber = await putOne(aggregate(texts.map((text) => ({ partitionKey: `pk-${text}`, data: text }))));
    texts.forEach((text, subSequenceNumber) => expected.push({ sequenceNumber, subSequenceNumber, text }));
  };
  const t = (name: string) => `${tag}-${name}`;
  await put([t('p0')]);
  await put([t('p1')]);
  await put(['a0', 'a1', 'a2', 'a3', 'a4'].map(t));
  await put([t('p2')]);
  await put(['b0', 'b1', 'b2'].map(t));
  await put([t('p3')]);
  return expected;
}

async function onlyShard(context: KclTestContext, streamName: string): Promise<string> {
  const shardId = (await listShards(context.kinesis, streamName))[0]?.ShardId;
  assert.ok(shardId, 'the stream has a shard');
  return shardId;
}

function positionsOf(records: readonly Seen[]): string[] {
  return records.map((r) => `${r.text}@${r.sequenceNumber}/${r.subSequenceNumber ?? '-'}`);
}

/**
 * Runs a consumer on a worker process that checkpoints at a2, SIGKILLs that process (while the workflow idles at the
 * shard's tip, or while it waits on a processRecords call in the killed process), and checks that a new worker process
 * takes the running workflow over from the durable checkpoint.
 */
async function killWorkerAndResume(
  context: KclTestContext,
  killWhile: 'idle' | 'processing',
  tag: string,
): Promise<void> {
  // Prepare
  const streamName = await createStream(context.kinesis, 1);
  const applicationName = uniqueName('app');
  const taskQueue = uniqueName('tq');
  const shardId = await onlyShard(context, streamName);
  const expected = await putMixedRecords(context, streamName, tag);
  const a2 = expected.find((r) => r.text === `${tag}-a2`)!;
  const outputDir = mkdtempSync(join(tmpdir(), 'temporal-kcl-kill-'));
  const table = new CheckpointTable({ dynamoDb: context.dynamoDb, tableName: applicationName });

  try {
    const workerA = await startWorkerProcess(context, {
      taskQueue,
      outputFile: join(outputDir, 'a.jsonl'),
      checkpoint: { mode: 'at', positions: [{ sequenceNumber: a2.sequenceNumber, subSequenceNumber: 2 }] },
      // 'processing': the batch after the checkpoint is written out, then its processRecords never returns.
      ...(killWhile === 'processing' ? { hangOnData: `${tag}-p2` } : {}),
    });
    const handle = await startShardConsumer(context, {
      taskQueue,
      applicationName,
      streamName,
      shardId,
      processor: 'recorder',
      options: FAST,
    });
    await workerA.until(
      (lines) =>
        lines.filter((l) => l.kind === 'record').length >= expected.length &&
        (killWhile === 'idle' || lines.some((l) => l.kind === 'hang')),
    );
    const pinnedBefore = await handle.query(progressQuery);
    assert.equal(pinnedBefore.worker, workerA.workerQueue);
    assert.deepEqual((await table.getLease(shardId))?.checkpoint, {
      sequenceNumber: a2.sequenceNumber,
      subSequenceNumber: 2,
    });

    // Act: kill the worker process while the workflow runs (idling at the shard's tip, or waiting on a processRecords
    // call in the killed process), add records, and start another worker process.
    await workerA.kill('SIGKILL');
    const killedAt = Date.now();
    const more = await putRecords(context.kinesis, streamName, [
      { partitionKey: `pk-${tag}-p4`, data: `${tag}-p4` },
      { partitionKey: `pk-${tag}-p5`, data: `${tag}-p5` },
    ]);
    const workerB = await startWorkerProcess(context, {
      taskQueue,
      outputFile: join(outputDir, 'b.jsonl'),
      checkpoint: { mode: 'every-batch' },
    });
    const readyAt = Date.now();
    const afterA2 = [
      ...expected.slice(expected.indexOf(a2) + 1),
      ...more.map((put, i) => ({ sequenceNumber: put.sequenceNumber, text: `${tag}-p${4 + i}` })),
    ];
    await workerB.until((lines) => lines.filter((l) => l.kind === 'record').length >= afterA2.length);
    const caughtUpAt = Date.now();
    await new Promise((r) => setTimeout(r, 1_000));
    const progress = await handle.query(progressQuery);
    await handle.signal(stopSignal);
    const result = await handle.result();

    // Assess: A saw everything once; B exactly what follows a2 (a3 first), then the new records.
    const seenByA = workerA.records().map((r) => ({ ...r, text: r.data }));
    const seenByB = workerB.records().map((r) => ({ ...r, text: r.data }));
    assert.deepEqual(positionsOf(seenByA), positionsOf(expected));
    assert.deepEqual(positionsOf(seenByB), positionsOf(afterA2));
    const initialized = workerB.lines().find((l) => l.kind === 'initialize');
    assert.deepEqual(initialized?.startingPosition, { sequenceNumber: a2.sequenceNumber, subSequenceNumber: 2 });
    const redelivered = seenByB.filter((b) => seenByA.some((a) => a.text === b.text)).length;
    assert.equal(redelivered, expected.length - expected.indexOf(a2) - 1);
    assert.equal(progress.worker, workerB.workerQueue);
    assert.equal(progress.state, 'PROCESSING');
    assert.ok(progress.counters.workerMoves >= 1, `workerMoves ${progress.counters.workerMoves}`);
    assert.equal(result.reason, 'REQUESTED');
    const last = afterA2.at(-1)!;
    assert.deepEqual((await table.getLease(shardId))?.checkpoint, {
      sequenceNumber: last.sequenceNumber,
      subSequenceNumber: 0,
    });
    console.log(
      `[kill while ${killWhile}] redelivered after SIGKILL: ${redelivered} user records (of ${expected.length}); ` +
        `worker moves ${progress.counters.workerMoves}; new process ready ${readyAt - killedAt} ms after the kill, ` +
        `caught up ${caughtUpAt - readyAt} ms after that`,
    );
  } finally {
    await killAllWorkerProcesses();
  }
}

describe('ShardConsumerWorkflow resumes from a checkpoint inside an aggregate', () => {
  const context = kclTestContextForSuite({ beforeClose: killAllWorkerProcesses });

  test('terminated workflow: a new run with the same id resumes at the next user record of the aggregate', async () => {
    // Prepare
    const streamName = await createStream(context.kinesis, 1);
    const applicationName = uniqueName('app');
    const taskQueue = uniqueName('tq');
    const shardId = await onlyShard(context, streamName);
    const expected = await putMixedRecords(context, streamName, 'r');
    const a2 = expected.find((r) => r.text === 'r-a2')!;
    const afterA2 = expected.slice(expected.indexOf(a2) + 1);
    // The first consumer checkpoints at a2 (inside aggregate a) and nowhere else; the second after every batch.
    const first = recordingProcessor({
      checkpointEveryBatch: false,
      checkpointAtShutdown: false,
      onBatch: async ({ records, checkpointer }) => {
        if (records.some((r) => r.sequenceNumber === a2.sequenceNumber && r.subSequenceNumber === 2)) {
          await checkpointer.checkpoint(a2.sequenceNumber, 2);
        }
      },
    });
    const second = recordingProcessor();
    const worker = await testWorker(context, {
      processors: { first: first.factory, second: second.factory },
      taskQueue,
    });
    const table = new CheckpointTable({ dynamoDb: context.dynamoDb, tableName: applicationName });
    const input = { taskQueue, applicationName, streamName, shardId, options: FAST };

    await worker.runUntil(
      (async () => {
        // Act 1: consume everything, checkpointing at a2, then terminate the workflow (no shutdown, no checkpoint).
        const firstRun = await startShardConsumer(context, { ...input, processor: 'first' });
        await first.recording.until((r) => r.records.length >= expected.length);
        const leaseBefore = await table.getLease(shardId);
        assert.deepEqual(leaseBefore?.checkpoint, { sequenceNumber: a2.sequenceNumber, subSequenceNumber: 2 });
        await firstRun.terminate('test: consumer killed');

        // Act 2: a new consumer with the same workflow id.
        const secondRun = await startShardConsumer(context, { ...input, processor: 'second' });
        await second.recording.until((r) => r.records.length >= afterA2.length);
        // Give a wrongly repeated or extra delivery the time to show up.
        await new Promise((r) => setTimeout(r, 1_000));
        await secondRun.signal(stopSignal);
        const result = await secondRun.result();
        assert.equal(result.reason, 'REQUESTED');
        assert.equal(result.counters.recordsProcessed, afterA2.length);
      })(),
    );

    // Assess: the first consumer saw everything; the second exactly what follows a2, starting with a3.
    assert.deepEqual(positionsOf(first.recording.records), positionsOf(expected));
    assert.deepEqual(positionsOf(second.recording.records), positionsOf(afterA2));
    assert.equal(second.recording.records[0]?.text, 'r-a3');
    const initialized = second.recording.events.find((e) => e.kind === 'initialize');
    assert.deepEqual(initialized?.detail, { sequenceNumber: a2.sequenceNumber, subSequenceNumber: 2 });
    const last = expected.at(-1)!;
    const lease = await table.getLease(shardId);
    assert.deepEqual(lease?.checkpoint, { sequenceNumber: last.sequenceNumber, subSequenceNumber: 0 });
    assert.equal(lease?.owner, undefined, 'the stopped consumer released its lease');
  });

  test('SIGKILLed idle worker process: the running workflow moves to a new worker process and resumes after the checkpoint', async () => {
    await killWorkerAndResume(context, 'idle', 'k');
  });

  test('worker process SIGKILLed inside processRecords: heartbeat timeout, then the new process resumes after the checkpoint', async () => {
    await killWorkerAndResume(context, 'processing', 'h');
  });
});

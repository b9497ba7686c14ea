/**
 * The scenarios `npm run record-histories` records: each runs consumers on the real local stack until they have taken
 * the path it is named for, ends them, and returns the workflow ids whose histories are kept. Each asserts that it took
 * that path, so a refreshed recording cannot silently miss what the replay test is meant to guard.
 *
 * Record data and partition keys all carry {@link RECORD_MARK}; the recorder refuses a history that contains it.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SplitShardCommand } from '@aws-sdk/client-kinesis';
import type { WorkflowHandle } from '@temporalio/client';
import type { DeadLetterEntry } from '../src/activities';
import { startStreamConsumer, stopStreamConsumer } from '../src/client/consumers';
import type { ShardProgress } from '../src/consumer-types';
import { shardConsumerWorkflowId, streamConsumerWorkflowId } from '../src/ids';
import type { Execution, ShardConsumerOptions } from '../src/options';
import { progressQuery, retrySignal, type shardConsumerWorkflow, stopSignal } from '../src/workflows/shard-consumer';
import {
  createStream,
  firstShardId,
  type KclTestContext,
  listShards,
  putRecords,
  recordingProcessor,
  startShardConsumer,
  testWorker,
  waitUntilActive,
} from '../test/helpers/kcl';
import { startWorkerProcess } from '../test/helpers/child-worker';
import { RECORD_MARK } from '../test/helpers/histories';
import { uniqueName } from '../test/helpers/stack';

export interface Scenario {
  /** File name prefix of its histories. */
  name: string;
  /** What it shows, for the manifest. */
  description: string;
  /** Runs the scenario to its end; returns the ids of the workflows to record (each closed by then). */
  run(context: KclTestContext): Promise<string[]>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Records `from`..`from + count - 1`; those in `poison` carry a poison marker the processor refuses. */
function records(count: number, { from = 0, poison = [] as number[] } = {}) {
  return Array.from({ length: count }, (_, i) => {
    const n = String(from + i).padStart(3, '0');
    return {
      partitionKey: `${RECORD_MARK}-pk-${n}`,
      data: `${RECORD_MARK}-data-${n}${poison.includes(from + i) ? '-poison' : ''}`,
    };
  });
}

const isPoison = (data: Uint8Array) => Buffer.from(data).toString('utf8').endsWith('-poison');

async function progressUntil(
  handle: WorkflowHandle<typeof shardConsumerWorkflow>,
  predicate: (progress: ShardProgress) => boolean,
  what: string,
  timeoutMs = 60_000,
): Promise<ShardProgress> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const progress = await handle.query(progressQuery);
    if (predicate(progress)) return progress;
    if (Date.now() > deadline) throw new Error(`${what}: not reached; last progress ${JSON.stringify(progress)}`);
    await sleep(100);
  }
}

/** A one-shard stream with `count` records and a fresh application and task queue. */
async function singleShard(context: KclTestContext, name: string, count: number, poison: number[] = []) {
  const streamName = await createStream(context.kinesis, 1, name);
  await putRecords(context.kinesis, streamName, records(count, { poison }));
  return {
    streamName,
    shardId: await firstShardId(context.kinesis, streamName),
    applicationName: uniqueName(name),
    taskQueue: uniqueName('tq'),
  };
}

const BASE: ShardConsumerOptions = {
  initialPosition: 'TRIM_HORIZON',
  maxRecords: 5,
  idleTimeBetweenReadsMs: 200,
  maxIdleWaitMs: 1_000,
};

const perBatch: Scenario = {
  name: 'shard-per-batch',
  description:
    'per-batch shard consumer: 12 records in batches of 5, continue-as-new every 2 batches, quiet reads at the tip, ' +
    'then a stop while a read waits (REQUESTED)',
  async run(context) {
    const s = await singleShard(context, 'replay-per-batch', 12);
    const { factory, recording } = recordingProcessor();
    const worker = await testWorker(context, { processors: { recorder: factory }, taskQueue: s.taskQueue });
    await worker.runUntil(
      (async () => {
        const handle = await startShardConsumer(context, {
          ...s,
          processor: 'recorder',
          options: { ...BASE, execution: 'per-batch', maxBatchesPerRun: 2 },
        });
        await recording.until((r) => r.records.length >= 12);
        await progressUntil(handle, (p) => p.run >= 3, 'a third run');
        await sleep(1_500); // quiet reads at the tip
        await handle.signal(stopSignal);
        const result = await handle.result();
        assert.equal(result.reason, 'REQUESTED');
        assert.equal(result.counters.recordsProcessed, 12);
      })(),
    );
    return [shardConsumerWorkflowId(s.applicationName, s.streamName, s.shardId)];
  },
};

const windowed: Scenario = {
  name: 'shard-windowed',
  description:
    'windowed shard consumer: windows of 2 s while a producer writes for 5 s, a quiet period (window ends QUIET, ' +
    'reads wait), records again, continue-as-new every 4 steps, then a stop (REQUESTED)',
  async run(context) {
    const s = await singleShard(context, 'replay-windowed', 5);
    const { factory, recording } = recordingProcessor();
    const worker = await testWorker(context, { processors: { recorder: factory }, taskQueue: s.taskQueue });
    await worker.runUntil(
      (async () => {
        const handle = await startShardConsumer(context, {
          ...s,
          processor: 'recorder',
          options: { ...BASE, execution: 'windowed', windowDurationMs: 2_000, maxBatchesPerRun: 4 },
        });
        let put = 5;
        const busyUntil = Date.now() + 5_000;
        while (Date.now() < busyUntil) {
          await putRecords(context.kinesis, s.streamName, records(3, { from: put }));
          put += 3;
          await sleep(100);
        }
        await recording.until((r) => r.records.length >= put);
        await sleep(3_000); // quiet
        await putRecords(context.kinesis, s.streamName, records(4, { from: put }));
        put += 4;
        await recording.until((r) => r.records.length >= put);
        await sleep(500);
        await handle.signal(stopSignal);
        const result = await handle.result();
        assert.equal(result.reason, 'REQUESTED');
        assert.equal(result.counters.recordsProcessed, put);
      })(),
    );
    return [shardConsumerWorkflowId(s.applicationName, s.streamName, s.shardId)];
  },
};

const reshard: Scenario = {
  name: 'reshard',
  description:
    'stream consumer of a one-shard stream: records, a split while consuming (the parent ends with TERMINATE and ' +
    'reports its children, which start), records on the children, then the stream consumer is stopped (REQUESTED)',
  async run(context) {
    const streamName = await createStream(context.kinesis, 1, 'replay-reshard');
    const applicationName = uniqueName('replay-reshard');
    const taskQueue = uniqueName('tq');
    const { factory, recording } = recordingProcessor();
    const worker = await testWorker(context, { processors: { recorder: factory }, taskQueue });
    const [parent] = await listShards(context.kinesis, streamName);
    assert.ok(parent?.ShardId && parent.HashKeyRange?.StartingHashKey && parent.HashKeyRange.EndingHashKey);
    let shardIds: string[] = [];
    await worker.runUntil(
      (async () => {
        await startStreamConsumer(context.client, {
          applicationName,
          streamName,
          processor: 'recorder',
          taskQueue,
          shardSyncIntervalMs: 5_000,
          shardOptions: { ...BASE, parentShardPollIntervalMs: 200 },
        });
        await putRecords(context.kinesis, streamName, records(10));
        await recording.until((r) => r.records.length >= 10);
        const start = BigInt(parent.HashKeyRange!.StartingHashKey!);
        const end = BigInt(parent.HashKeyRange!.EndingHashKey!);
        await context.kinesis.send(
          new SplitShardCommand({
            StreamName: streamName,
            ShardToSplit: parent.ShardId,
            NewStartingHashKey: ((start + end) / 2n + 1n).toString(),
          }),
        );
        await waitUntilActive(context.kinesis, streamName);
        const parentResult = await context.client.workflow
          .getHandle<typeof shardConsumerWorkflow>(
            shardConsumerWorkflowId(applicationName, streamName, parent.ShardId!),
          )
          .result();
        assert.equal(parentResult.reason, 'TERMINATE');
        await putRecords(context.kinesis, streamName, records(10, { from: 10 }));
        await recording.until((r) => r.records.length >= 20);
        await sleep(500);
        await stopStreamConsumer(context.client, { applicationName, streamName, wait: true });
        shardIds = (await listShards(context.kinesis, streamName)).map((shard) => shard.ShardId!);
        const children = new Set(recording.records.map((r) => r.shardId));
        assert.equal(children.size, 3, 'the parent and both children delivered records');
        assert.deepEqual(recording.shutdowns.map((x) => x.reason).sort(), ['REQUESTED', 'REQUESTED', 'TERMINATE']);
      })(),
    );
    return [
      streamConsumerWorkflowId(applicationName, streamName),
      ...shardIds.map((shardId) => shardConsumerWorkflowId(applicationName, streamName, shardId)),
    ];
  },
};

function halt(execution: Execution): Scenario {
  return {
    name: `halt-${execution}`,
    description:
      `${execution} shard consumer, onProcessingFailure HALT: a poison batch fails 2 attempts, the shard halts; ` +
      'after a fix, a retry signal delivers it; then a stop (REQUESTED)',
    async run(context) {
      const s = await singleShard(context, `replay-halt-${execution}`, 10, [6]);
      let fixed = false;
      const { factory, recording } = recordingProcessor({
        onBatch: (input) => {
          if (!fixed && input.records.some((record) => isPoison(record.data))) throw new Error('poison record');
        },
      });
      const worker = await testWorker(context, { processors: { recorder: factory }, taskQueue: s.taskQueue });
      await worker.runUntil(
        (async () => {
          const handle = await startShardConsumer(context, {
            ...s,
            processor: 'recorder',
            options: {
              ...BASE,
              execution,
              processingRetry: { maximumAttempts: 2, initialIntervalMs: 100 },
              onProcessingFailure: 'HALT',
            },
          });
          await progressUntil(handle, (p) => p.state === 'HALTED', 'HALTED');
          fixed = true;
          await handle.signal(retrySignal);
          await recording.until((r) => r.records.length >= 10);
          await progressUntil(handle, (p) => p.state === 'PROCESSING', 'PROCESSING after the retry');
          await sleep(500);
          await handle.signal(stopSignal);
          const result = await handle.result();
          assert.equal(result.reason, 'REQUESTED');
          assert.equal(result.counters.recordsProcessed, 10);
        })(),
      );
      return [shardConsumerWorkflowId(s.applicationName, s.streamName, s.shardId)];
    },
  };
}

function deadLetter(execution: Execution): Scenario {
  return {
    name: `dead-letter-${execution}`,
    description:
      `${execution} shard consumer, onProcessingFailure DEAD_LETTER (RECORD granularity, CALLBACK destination): ` +
      'the poison batch fails 3 attempts, is delivered record by record, the poison record is dead-lettered; then a stop',
    async run(context) {
      const s = await singleShard(context, `replay-dead-letter-${execution}`, 12, [6]);
      const dead: DeadLetterEntry[] = [];
      const { factory, recording } = recordingProcessor({
        onBatch: (input) => {
          if (input.records.some((record) => isPoison(record.data))) throw new Error('poison record');
        },
      });
      const worker = await testWorker(context, {
        processors: { recorder: factory },
        taskQueue: s.taskQueue,
        deadLetterHandlers: { 'replay-dlq': (entries) => void dead.push(...entries) },
      });
      await worker.runUntil(
        (async () => {
          const handle = await startShardConsumer(context, {
            ...s,
            processor: 'recorder',
            options: {
              ...BASE,
              execution,
              processingRetry: { maximumAttempts: 3, initialIntervalMs: 100 },
              onProcessingFailure: 'DEAD_LETTER',
              deadLetterGranularity: 'RECORD',
              deadLetter: { type: 'CALLBACK', name: 'replay-dlq' },
            },
          });
          await recording.until((r) => r.records.length >= 11);
          await progressUntil(handle, (p) => p.counters.deadLetteredRecords === 1, 'one dead-lettered record');
          await sleep(500);
          await handle.signal(stopSignal);
          const result = await handle.result();
          assert.equal(result.reason, 'REQUESTED');
          assert.equal(result.counters.deadLetteredRecords, 1);
        })(),
      );
      assert.equal(dead.length, 1);
      assert.ok(isPoison(dead[0]!.record.data));
      return [shardConsumerWorkflowId(s.applicationName, s.streamName, s.shardId)];
    },
  };
}

/**
 * A run with the default `maxBatchesPerRun` and more batches than a later default allows: a consumer in the middle of
 * such a run when a release changes the default must replay it as it was.
 */
const defaultRun: Scenario = {
  name: 'default-run-per-batch',
  description:
    'per-batch shard consumer with the default maxBatchesPerRun: 30 records in batches of 1 (30 batches in one run), ' +
    'then a stop (REQUESTED)',
  async run(context) {
    const s = await singleShard(context, 'replay-default-run', 30);
    const { factory, recording } = recordingProcessor();
    const worker = await testWorker(context, { processors: { recorder: factory }, taskQueue: s.taskQueue });
    await worker.runUntil(
      (async () => {
        const handle = await startShardConsumer(context, {
          ...s,
          processor: 'recorder',
          options: { ...BASE, execution: 'per-batch', maxRecords: 1 },
        });
        await recording.until((r) => r.records.length >= 30);
        const progress = await progressUntil(handle, (p) => p.counters.batches >= 30, '30 batches');
        assert.equal(progress.run, 1, 'all 30 batches in the first run');
        await handle.signal(stopSignal);
        const result = await handle.result();
        assert.equal(result.reason, 'REQUESTED');
      })(),
    );
    return [shardConsumerWorkflowId(s.applicationName, s.streamName, s.shardId)];
  },
};

/**
 * A worker stopped gracefully (SIGTERM) while it holds the shard: the shard moves to the other worker. Worker A is a
 * process of its own (one process may not run two workers on one task queue).
 */
function drain(execution: Execution): Scenario {
  return {
    name: `drain-${execution}`,
    description: `${execution} shard consumer on worker process A; worker B starts, A gets SIGTERM while it holds the shard (refusals DRAINING), the shard moves to B; records again, then a stop (REQUESTED)`,
    async run(context) {
      const s = await singleShard(context, `replay-drain-${execution}`, 10);
      const outputFile = join(mkdtempSync(join(tmpdir(), 'replay-drain-')), 'a.jsonl');
      const a = await startWorkerProcess(context, { taskQueue: s.taskQueue, outputFile, checkpoint: { mode: 'every-batch' } });
      const { factory, recording } = recordingProcessor();
      const b = await testWorker(context, { processors: { recorder: factory }, taskQueue: s.taskQueue });
      try {
        const handle = await startShardConsumer(context, {
          ...s,
          processor: 'recorder',
          options: { ...BASE, execution, ...(execution === 'windowed' ? { windowDurationMs: 30_000 } : {}) },
        });
        await a.until((lines) => lines.filter((line) => line.kind === 'record').length >= 10);
        await b.runUntil(
          (async () => {
            await sleep(1_000);
            await a.kill('SIGTERM');
            await putRecords(context.kinesis, s.streamName, records(5, { from: 10 }));
            await recording.until((r) => r.records.length >= 5);
            const progress = await handle.query(progressQuery);
            assert.equal(progress.worker, b.workerQueue, 'the shard moved to worker B');
            assert.ok(progress.counters.workerMoves >= 1, 'a move');
            await handle.signal(stopSignal);
            const result = await handle.result();
            assert.equal(result.reason, 'REQUESTED');
          })(),
        );
      } catch (error) {
        console.error(`drain-${execution}:`, error);
        throw error;
      } finally {
        await a.kill('SIGKILL');
      }
      return [shardConsumerWorkflowId(s.applicationName, s.streamName, s.shardId)];
    },
  };
}

export const SCENARIOS: readonly Scenario[] = [
  defaultRun,
  drain('per-batch'),
  drain('windowed'),
  perBatch,
  windowed,
  reshard,
  halt('per-batch'),
  halt('windowed'),
  deadLetter('per-batch'),
  deadLetter('windowed'),
];

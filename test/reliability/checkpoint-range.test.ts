/**
 * Checkpoints at the edges of the allowed range, on the real local stack: the last checkpoint again is a no-op (as in Java
 * KCL), so a stop whose `shutdown` repeats it completes; a checkpoint genuinely out of range fails once, clearly, and is
 * never retried forever.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import type { ShardConsumerResult } from '../../src/consumer-types';
import type { RecordProcessorFactory } from '../../src/record-processor';
import { progressQuery, type shardConsumerWorkflow, stopSignal } from '../../src/workflows/shard-consumer';
import {
  createStream,
  firstShardId,
  kclTestContext,
  type KclTestContext,
  putRecords,
  startShardConsumer,
  testWorker,
} from '../helpers/kcl';
import { uniqueName } from '../helpers/stack';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** A sequence number far beyond anything in the stream. */
const FAR_AHEAD = '9'.repeat(56);

/** Resolves with the workflow's outcome, or with 'STILL RUNNING' (and the shutdown attempts so far) after `ms`. */
async function outcomeWithin(
  handle: WorkflowHandle<typeof shardConsumerWorkflow>,
  ms: number,
): Promise<ShardConsumerResult | Error | { stillRunning: true; shutdownAttempt: number }> {
  const timeout = sleep(ms).then(() => 'TIMEOUT' as const);
  const outcome = await Promise.race([handle.result().catch((error: unknown) => error as Error), timeout]);
  if (outcome !== 'TIMEOUT') return outcome;
  const description = await handle.describe();
  const pending = description.raw.pendingActivities ?? [];
  const shutdown = pending.find((activity) => activity.activityType?.name === 'shutdownProcessor');
  return { stillRunning: true, shutdownAttempt: shutdown?.attempt ?? 0 };
}

describe('checkpoint range on the real local stack', () => {
  let context: KclTestContext;
  before(async () => {
    context = await kclTestContext();
  });
  after(async () => {
    await context.close();
  });

  async function scenario(shutdownCheckpoint: (last: string) => string) {
    const streamName = await createStream(context.kinesis, 1, 'ckrange');
    const shardId = await firstShardId(context.kinesis, streamName);
    const puts = await putRecords(
      context.kinesis,
      streamName,
      ['a', 'b', 'c'].map((data) => ({ partitionKey: data, data })),
    );
    const shutdowns: string[] = [];
    let processed = 0;
    let lastSeen: string | undefined;
    const factory: RecordProcessorFactory = () => ({
      async processRecords({ records, checkpointer }) {
        processed += records.length;
        lastSeen = records.at(-1)?.sequenceNumber ?? lastSeen;
        await checkpointer.checkpoint();
      },
      async shutdown(input) {
        shutdowns.push(input.reason);
        if (input.checkpointer && lastSeen) await input.checkpointer.checkpoint(shutdownCheckpoint(lastSeen));
      },
    });
    const taskQueue = uniqueName('tq');
    const worker = await testWorker(context, { processors: { edge: factory }, taskQueue });
    const start = () =>
      startShardConsumer(context, {
        taskQueue,
        applicationName: uniqueName('app'),
        streamName,
        shardId,
        processor: 'edge',
        options: {
          initialPosition: 'TRIM_HORIZON',
          idleTimeBetweenReadsMs: 200,
          processingRetry: { initialIntervalMs: 200 },
        },
      });
    return { worker, start, shutdowns, puts, processed: () => processed };
  }

  test('a stop whose shutdown checkpoints the last checkpoint again completes (REQUESTED)', async () => {
    const s = await scenario((last) => last);
    const outcome = await s.worker.runUntil(
      (async () => {
        const handle = await s.start();
        while (s.processed() < s.puts.length) await sleep(50);
        // The batch's checkpoint is durable once the progress shows it.
        for (let i = 0; i < 100 && (await handle.query(progressQuery)).counters.checkpoints < 1; i++) await sleep(50);
        await handle.signal(stopSignal);
        return outcomeWithin(handle, 15_000);
      })(),
    );
    console.log(
      `stop with the last checkpoint repeated in shutdown: ${JSON.stringify(outcome)}; shutdown calls ${s.shutdowns.length}`,
    );
    assert.ok(!(outcome instanceof Error), `the consumer failed: ${outcome instanceof Error ? outcome.message : ''}`);
    assert.ok(!('stillRunning' in outcome), `the stop hung: ${JSON.stringify(outcome)}`);
    assert.equal(outcome.reason, 'REQUESTED');
    assert.deepEqual(s.shutdowns, ['REQUESTED']);
  });

  test('a checkpoint beyond the last record delivered, in shutdown, fails once with CheckpointOutOfRange', async () => {
    const s = await scenario(() => FAR_AHEAD);
    const outcome = await s.worker.runUntil(
      (async () => {
        const handle = await s.start();
        while (s.processed() < s.puts.length) await sleep(50);
        await handle.signal(stopSignal);
        return outcomeWithin(handle, 15_000);
      })(),
    );
    const message =
      outcome instanceof WorkflowFailedError
        ? String((outcome.cause?.cause as Error | undefined)?.message)
        : JSON.stringify(outcome);
    console.log(`stop with an out-of-range checkpoint in shutdown: ${message}; shutdown calls ${s.shutdowns.length}`);
    assert.ok(outcome instanceof WorkflowFailedError, `expected the consumer to fail, got ${JSON.stringify(outcome)}`);
    // (The worker shuts the instance down as ZOMBIE when it stops: its own shutdown never completed.)
    assert.deepEqual(
      s.shutdowns.filter((reason) => reason === 'REQUESTED'),
      ['REQUESTED'],
      'shutdown(REQUESTED) called once, not retried',
    );
    assert.match(message, /cannot checkpoint at 9{56}.*last record delivered/);
  });

  test('a checkpoint beyond the last record delivered, in processRecords, halts the shard after one attempt', async () => {
    const streamName = await createStream(context.kinesis, 1, 'ckrange');
    const shardId = await firstShardId(context.kinesis, streamName);
    await putRecords(context.kinesis, streamName, [{ partitionKey: 'a', data: 'a' }]);
    let calls = 0;
    const factory: RecordProcessorFactory = () => ({
      async processRecords({ checkpointer }) {
        calls++;
        await checkpointer.checkpoint(FAR_AHEAD);
      },
    });
    const taskQueue = uniqueName('tq');
    const worker = await testWorker(context, { processors: { edge: factory }, taskQueue });
    const progress = await worker.runUntil(
      (async () => {
        const handle = await startShardConsumer(context, {
          taskQueue,
          applicationName: uniqueName('app'),
          streamName,
          shardId,
          processor: 'edge',
          // Default processingRetry: unlimited attempts.
          options: {
            initialPosition: 'TRIM_HORIZON',
            processingRetry: { initialIntervalMs: 100, maximumIntervalMs: 200 },
          },
        });
        let progress = await handle.query(progressQuery);
        for (let i = 0; i < 100 && progress.state !== 'HALTED'; i++) {
          await sleep(50);
          progress = await handle.query(progressQuery);
        }
        await handle.terminate('test over');
        return progress;
      })(),
    );
    console.log(
      `out-of-range checkpoint in processRecords: state ${progress.state} after ${calls} processRecords calls`,
    );
    assert.equal(progress.state, 'HALTED');
    assert.match(progress.haltedReason ?? '', /CheckpointOutOfRange.*cannot checkpoint at 9{56}/);
    assert.equal(calls, 1, 'processRecords called once');
  });
});

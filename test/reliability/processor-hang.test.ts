/**
 * A processRecords that never returns: its attempts run out of time (processTimeoutMs), which is a processing failure —
 * retried by processingRetry, then HALT — not a lost worker. The shard stays on its worker (no moves), and after a fix
 * and a retry signal the batch is delivered and nothing is lost.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { progressQuery, retrySignal, stopSignal } from '../../src/workflows/shard-consumer';
import {
  createStream,
  firstShardId,
  kclTestContextForSuite,
  progressWhen,
  putRecords,
  recordingProcessor,
  startShardConsumer,
  testWorker,
} from '../helpers/kcl';
import { uniqueName } from '../helpers/stack';

describe('a processor that hangs', () => {
  const context = kclTestContextForSuite();

  test('its timed-out attempts go through processingRetry and HALT the shard; no worker move; a retry after the fix delivers everything', async () => {
    // Prepare: r2 hangs the processor (forever) until the fix.
    const streamName = await createStream(context.kinesis, 1, 'hang');
    const shardId = await firstShardId(context.kinesis, streamName);
    const texts = ['r0', 'r1', 'r2', 'r3', 'r4', 'r5'];
    await putRecords(
      context.kinesis,
      streamName,
      texts.map((data) => ({ partitionKey: data, data })),
    );
    let fixed = false;
    let hangs = 0;
    const { factory, recording } = recordingProcessor({
      onBatch: async (input) => {
        if (fixed || !input.records.some((r) => Buffer.from(r.data).toString() === 'r2')) return;
        hangs++;
        await new Promise(() => undefined); // never returns
      },
    });
    const taskQueue = uniqueName('tq');
    const worker = await testWorker(context, { processors: { hanging: factory }, taskQueue });

    // Act
    const { halted, result } = await worker.runUntil(
      (async () => {
        const handle = await startShardConsumer(context, {
          taskQueue,
          applicationName: uniqueName('app'),
          streamName,
          shardId,
          processor: 'hanging',
          options: {
            initialPosition: 'TRIM_HORIZON',
            maxRecords: 2,
            idleTimeBetweenReadsMs: 200,
            processTimeoutMs: 1_000,
            processingRetry: { initialIntervalMs: 100, maximumAttempts: 2 },
            onProcessingFailure: 'HALT',
          },
        });
        const halted = await progressWhen(handle, (p) => p.state === 'HALTED', 60_000);
        fixed = true;
        await handle.signal(retrySignal);
        await recording.until((r) => r.records.length >= texts.length, 60_000);
        await progressWhen(handle, (p) => p.counters.recordsProcessed >= texts.length, 60_000);
        const progress = await handle.query(progressQuery);
        await handle.signal(stopSignal);
        return { halted, progress, result: await handle.result() };
      })(),
    );

    // Assess
    console.log(
      `[hang] halted after ${hangs} hung attempts (${halted.haltedReason ?? '-'}); worker moves ${result.counters.workerMoves}`,
    );
    assert.equal(halted.state, 'HALTED');
    assert.equal(halted.counters.workerMoves, 0, 'a processing timeout does not move the shard');
    assert.equal(hangs, 2, 'processingRetry.maximumAttempts attempts, then HALT');
    assert.deepEqual(
      recording.records.map((r) => r.text),
      texts,
    );
    assert.equal(result.reason, 'REQUESTED');
    assert.equal(result.counters.workerMoves, 0);
  });
});

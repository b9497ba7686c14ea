/**
 * A quiet shard on the real stack: its reads wait on the worker (no workflow timer), records that arrive are delivered,
 * the reads leave nothing behind in the worker's memory, and a stop does not wait for a read's wait to run out. A quiet
 * read returns by its deadline even when Kinesis does not answer.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GetShardIteratorCommand } from '@aws-sdk/client-kinesis';
import { QUIET_READ_GRACE_MS, createShardReader } from '../../src/activities/shard-reader';
import { createKinesisClient } from '../../src/aws/clients';
import { progressQuery, stopSignal } from '../../src/workflows/shard-consumer';
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
import { startFaultProxy } from '../helpers/fault-proxy';
import { uniqueName } from '../helpers/stack';

/** Longer than the test waits for anything, so a stop that waited for a read's wait to end would show. */
const MAX_IDLE_WAIT_MS = 120_000;

describe('a quiet shard', () => {
  const context = kclTestContextForSuite();

  test('waits on the worker without timers or cached empty batches; records arriving are delivered; a stop ends it at once', async () => {
    // Prepare
    const streamName = await createStream(context.kinesis, 1, 'quiet');
    const shardId = await firstShardId(context.kinesis, streamName);
    const applicationName = uniqueName('app');
    const taskQueue = uniqueName('tq');
    const { factory, recording } = recordingProcessor();
    const worker = await testWorker(context, { processors: { recorder: factory }, taskQueue });

    // Act
    const { result, history, cachedWhileQuiet, quietReads, stopMs } = await worker.runUntil(
      (async () => {
        const handle = await startShardConsumer(context, {
          taskQueue,
          applicationName,
          streamName,
          shardId,
          processor: 'recorder',
          options: {
            initialPosition: 'TRIM_HORIZON',
            idleTimeBetweenReadsMs: 200,
            maxIdleWaitMs: MAX_IDLE_WAIT_MS,
            windowDurationMs: 2_000,
          },
        });
        // Quiet: reads find nothing (per-batch counts each; windowed reports them at the end of a window or a wait).
        await progressWhen(handle, (p) => p.counters.emptyBatches >= 3, 60_000);
        const cachedWhileQuiet = worker.cache.size;
        await putRecords(context.kinesis, streamName, [{ partitionKey: 'pk', data: 'after-a-quiet-while' }]);
        await recording.until((r) => r.records.length >= 1, 60_000);
        // Quiet again, then stop in the middle of a wait that would last two minutes.
        await new Promise((resolve) => setTimeout(resolve, 3_000));
        const stopped = Date.now();
        await handle.signal(stopSignal);
        const result = await handle.result();
        const stopMs = Date.now() - stopped;
        const quietReads = (await handle.query(progressQuery).catch(() => undefined))?.counters.emptyBatches;
        return { result, history: await handle.fetchHistory(), cachedWhileQuiet, quietReads, stopMs };
      })(),
    );

    // Assess
    const events = history.events ?? [];
    const timers = events.filter((event) => event.timerStartedEventAttributes).length;
    const waits = events
      .map((event) => event.activityTaskScheduledEventAttributes)
      .filter((scheduled) => scheduled?.activityType?.name === 'getRecords');
    console.log(
      `[quiet] ${result.counters.emptyBatches} empty reads, ${waits.length} read activities, ${timers} timers, ` +
        `${cachedWhileQuiet} batches cached while quiet, stop took ${stopMs} ms (quiet reads at the end: ${quietReads ?? '-'})`,
    );
    assert.deepEqual(
      recording.records.map((r) => r.text),
      ['after-a-quiet-while'],
    );
    assert.equal(result.reason, 'REQUESTED');
    assert.deepEqual(
      recording.shutdowns.map((s) => s.reason),
      ['REQUESTED'],
    );
    assert.equal(timers, 0, 'no workflow timer while the shard is quiet');
    assert.equal(cachedWhileQuiet, 0, 'empty batches are not kept in the worker');
    assert.equal(worker.cache.size, 0, 'nothing left in the worker after the stop');
    assert.ok(stopMs < MAX_IDLE_WAIT_MS / 4, `the stop took ${stopMs} ms: it did not wait for the read's wait to end`);
  });

  test('a quiet read returns by its wait + 500 ms when GetRecords hangs, empty and at the same iterator', async () => {
    // Prepare: every GetRecords answer is held back 8 s.
    const streamName = await createStream(context.kinesis, 1, 'quiet-hang');
    const shardId = await firstShardId(context.kinesis, streamName);
    const { ShardIterator: iterator } = await context.kinesis.send(
      new GetShardIteratorCommand({ StreamName: streamName, ShardId: shardId, ShardIteratorType: 'TRIM_HORIZON' }),
    );
    assert.ok(iterator);
    const proxy = await startFaultProxy({
      target: context.stack.aws.kinesisEndpoint,
      faultRate: 1,
      kinds: ['slow'],
      slowMs: 8_000,
      only: /GetRecords/,
    });
    const kinesis = createKinesisClient({ ...context.stack.aws, kinesisEndpoint: proxy.endpoint, maxAttempts: 1 });
    const reader = createShardReader({ kinesis });
    const waitMs = 1_000;
    try {
      // Act
      const started = Date.now();
      const { records, summary } = await reader.read(
        { applicationName: uniqueName('app'), streamName, shardId },
        iterator,
        { maxRecords: 100, idleWaitMs: waitMs, idlePollMs: 200 },
        undefined,
      );
      const tookMs = Date.now() - started;

      // Assess
      console.log(`[quiet] a read waiting ${waitMs} ms on a GetRecords that hangs returned after ${tookMs} ms`);
      assert.ok(tookMs >= waitMs, `returned after ${tookMs} ms, before its deadline`);
      assert.ok(tookMs < waitMs + QUIET_READ_GRACE_MS + 400, `returned after ${tookMs} ms: the deadline did not hold`);
      assert.equal(records.length, 0);
      assert.equal(summary.kinesisRecordCount, 0);
      assert.equal(summary.millisBehindLatest, 0);
      assert.equal(summary.nextIterator, iterator, 'read again from where it was');
      assert.equal(proxy.faults.slow, 1, 'one GetRecords call was in flight');
    } finally {
      kinesis.destroy();
      await proxy.close();
    }
  });
});

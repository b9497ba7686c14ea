/**
 * A processor lives as long as its shard is pinned to its worker: a quiet shard (no records, so no processor calls for
 * longer than `processorIdleTimeoutMs`) keeps its processor; a processor whose shard consumer is gone is shut down
 * (ZOMBIE) once idle. Run with a 1-second idle timeout.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { stopSignal } from '../../src/workflows/shard-consumer';
import {
  createStream,
  firstShardId,
  kclTestContextForSuite,
  putRecords,
  recordingProcessor,
  startShardConsumer,
  testWorker,
} from '../helpers/kcl';
import { uniqueName } from '../helpers/stack';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const IDLE_TIMEOUT_MS = 1_000;

describe('processor idle timeout', () => {
  const context = kclTestContextForSuite();

  async function scenario() {
    const streamName = await createStream(context.kinesis, 1, 'quiet');
    const shardId = await firstShardId(context.kinesis, streamName);
    const taskQueue = uniqueName('tq');
    const { factory, recording } = recordingProcessor();
    const worker = await testWorker(context, {
      processors: { recorder: factory },
      taskQueue,
      processorIdleTimeoutMs: IDLE_TIMEOUT_MS,
    });
    const start = () =>
      startShardConsumer(context, {
        taskQueue,
        applicationName: uniqueName('app'),
        streamName,
        shardId,
        processor: 'recorder',
        options: { initialPosition: 'TRIM_HORIZON', idleTimeBetweenReadsMs: 200 },
      });
    return { streamName, worker, recording, start };
  }

  test('a quiet shard keeps its processor past the idle timeout while the shard stays on the worker', async () => {
    const s = await scenario();
    await putRecords(context.kinesis, s.streamName, [{ partitionKey: 'k', data: 'first' }]);
    const outcome = await s.worker.runUntil(
      (async () => {
        const handle = await s.start();
        await s.recording.until((r) => r.records.some((record) => record.text === 'first'), 20_000);
        // Quiet: no records for 4 idle timeouts.
        await sleep(4 * IDLE_TIMEOUT_MS + 500);
        const hostSizeWhileQuiet = s.worker.host.size;
        await putRecords(context.kinesis, s.streamName, [{ partitionKey: 'k', data: 'second' }]);
        await s.recording.until((r) => r.records.some((record) => record.text === 'second'), 20_000);
        await handle.signal(stopSignal);
        const result = await handle.result();
        return { hostSizeWhileQuiet, result };
      })(),
    );
    const kinds = s.recording.events.map((event) =>
      event.kind === 'shutdown' ? `shutdown(${String(event.detail)})` : event.kind,
    );
    const initializes = kinds.filter((kind) => kind === 'initialize').length;
    console.log(
      `quiet for ${4 * IDLE_TIMEOUT_MS + 500} ms with a ${IDLE_TIMEOUT_MS} ms idle timeout: processors held ${outcome.hostSizeWhileQuiet}; ` +
        `events ${kinds.join(' ')}; worker moves ${outcome.result.counters.workerMoves}`,
    );
    assert.equal(outcome.hostSizeWhileQuiet, 1, 'the processor is still held while the shard is quiet');
    assert.deepEqual(kinds, ['initialize', 'process', 'process', 'shutdown(REQUESTED)'], 'one instance, never ZOMBIE');
    assert.equal(initializes, 1);
    assert.equal(outcome.result.counters.workerMoves, 0);
  });

  test('the processor of a shard consumer that is gone is shut down (ZOMBIE) once idle', async () => {
    const s = await scenario();
    await putRecords(context.kinesis, s.streamName, [{ partitionKey: 'k', data: 'first' }]);
    const held = await s.worker.runUntil(
      (async () => {
        const handle = await s.start();
        await s.recording.until((r) => r.records.some((record) => record.text === 'first'), 20_000);
        await handle.terminate('the shard consumer is gone');
        await s.recording.until((r) => r.shutdowns.length > 0, 4 * IDLE_TIMEOUT_MS + 60_000);
        return s.worker.host.size;
      })(),
    );
    console.log(`after the shard consumer was terminated: shutdowns ${JSON.stringify(s.recording.shutdowns)}`);
    assert.deepEqual(
      s.recording.shutdowns.map((shutdown) => shutdown.reason),
      ['ZOMBIE'],
    );
    assert.equal(held, 0);
  });
});

/**
 * Record data never travels through Temporal history: the reading worker keeps each batch in memory and the workflow
 * only carries a handle and counts. So history bytes per batch are the same for 1 KB and for 100 KB records, and the
 * data's content never appears in history.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { temporal } from '@temporalio/proto';
import { progressQuery, stopSignal } from '../../src/workflows/shard-consumer';
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

const RECORDS = 8;

/** `size` bytes of text with the marker at the start, in the middle and at the end. */
function recordData(marker: string, i: number, size: number): string {
  const head = `${marker}-${i}-`;
  const filler = size - 2 * head.length - marker.length;
  const half = 'x'.repeat(Math.floor(filler / 2));
  return `${head}${half}${marker}${half}${'y'.repeat(filler % 2)}${head}`;
}

interface HistoryFigures {
  bytes: number;
  events: number;
  largestEvent: number;
  batches: number;
  perBatch: number;
  containsMarker: boolean;
}

describe('ShardConsumerWorkflow history size', () => {
  const context = kclTestContextForSuite();

  test('history bytes per batch do not grow with record size, and record data never appears in history', async () => {
    // Prepare: one stream of 1 KB records, one of 100 KB records; same count, one record per batch. (One application
    // per stream: a KCL lease table is keyed by shard id alone.)
    const taskQueue = uniqueName('tq');
    const marker = `MARKER${uniqueName('').replace(/-/g, '')}`;
    const runs = { small: 1024, big: 100 * 1024 };
    const streams: Record<keyof typeof runs, { applicationName: string; streamName: string; shardId: string }> = {
      small: { applicationName: '', streamName: '', shardId: '' },
      big: { applicationName: '', streamName: '', shardId: '' },
    };
    for (const [name, size] of Object.entries(runs) as [keyof typeof runs, number][]) {
      const streamName = await createStream(context.kinesis, 1, `history-${name}`);
      const shardId = await firstShardId(context.kinesis, streamName);
      await putRecords(
        context.kinesis,
        streamName,
        Array.from({ length: RECORDS }, (_, i) => ({ partitionKey: `pk-${i}`, data: recordData(marker, i, size) })),
      );
      streams[name] = { applicationName: uniqueName(`app-${name}`), streamName, shardId };
    }
    const { factory, recording } = recordingProcessor();
    const worker = await testWorker(context, { processors: { recorder: factory }, taskQueue });

    // Act: consume both streams, stop, fetch both histories.
    const figures = await worker.runUntil(
      (async () => {
        const handles = await Promise.all(
          Object.values(streams).map(({ applicationName, streamName, shardId }) =>
            startShardConsumer(context, {
              taskQueue,
              applicationName,
              streamName,
              shardId,
              processor: 'recorder',
              // One record per batch; a long idle pause keeps empty reads at the tip to about one per run. History per
              // batch is a per-batch measure (a window adds none per batch).
              options: {
                execution: 'per-batch',
                initialPosition: 'TRIM_HORIZON',
                maxRecords: 1,
                idleTimeBetweenReadsMs: 10_000,
              },
            }),
          ),
        );
        await recording.until((r) => r.records.length >= 2 * RECORDS, 90_000);
        // Measure both at the same point: every record processed, then one empty read at the tip, now idling.
        for (const handle of handles) {
          for (let i = 0; (await handle.query(progressQuery)).counters.batches < RECORDS + 1; i++) {
            assert.ok(i < 200, 'the consumer reads the tip of the shard once');
            await new Promise((r) => setTimeout(r, 50));
          }
        }
        await new Promise((r) => setTimeout(r, 300));
        const figures = await Promise.all(
          handles.map(async (handle): Promise<HistoryFigures> => {
            const history = await handle.fetchHistory();
            const bytes = Buffer.from(temporal.api.history.v1.History.encode(history).finish());
            const eventSizes = (history.events ?? []).map(
              (event) => temporal.api.history.v1.HistoryEvent.encode(event).finish().length,
            );
            const { batches } = (await handle.query(progressQuery)).counters;
            return {
              bytes: bytes.length,
              events: eventSizes.length,
              largestEvent: Math.max(...eventSizes),
              batches,
              perBatch: bytes.length / batches,
              containsMarker: bytes.includes(marker),
            };
          }),
        );
        for (const handle of handles) {
          await handle.signal(stopSignal);
          assert.equal((await handle.result()).reason, 'REQUESTED');
        }
        return figures;
      })(),
    );

    // Assess
    const [small, big] = figures as [HistoryFigures, HistoryFigures];
    console.log(
      `[history] 1 KB records: ${small.bytes} B in ${small.events} events, ${small.batches} batches, ` +
        `${small.perBatch.toFixed(0)} B/batch, largest event ${small.largestEvent} B; ` +
        `100 KB records: ${big.bytes} B in ${big.events} events, ${big.batches} batches, ` +
        `${big.perBatch.toFixed(0)} B/batch, largest event ${big.largestEvent} B`,
    );
    assert.equal(recording.records.filter((r) => r.data.byteLength === runs.big).length, RECORDS);
    assert.equal(recording.records.filter((r) => r.data.byteLength === runs.small).length, RECORDS);
    assert.deepEqual([small.batches, big.batches], [RECORDS + 1, RECORDS + 1], 'one record per batch, one empty read');
    assert.ok(
      big.perBatch - small.perBatch < Math.min(1024, 0.1 * small.perBatch),
      `history per batch: ${big.perBatch.toFixed(0)} B with 100 KB records vs ${small.perBatch.toFixed(0)} B with 1 KB`,
    );
    assert.ok(big.largestEvent < 8 * 1024, `largest history event ${big.largestEvent} B`);
    assert.equal(small.containsMarker, false, 'record data in the 1 KB run history');
    assert.equal(big.containsMarker, false, 'record data in the 100 KB run history');
  });
});

/**
 * 5. Temporal cost: history events, history bytes and workflow tasks per batch, and DynamoDB writes per batch
 * (checkpoint writes, counted as the worker's AWS client sends them), for 100 B and for 10 KB records: record data
 * never enters history, so bytes per batch must not depend on record size.
 */
import type { BenchContext } from './lib/context';
import { historyFigures, type HistoryFigures } from './lib/history';
import { createStream, deleteStream, prefill, uniqueName } from './lib/kinesis';
import { runShardConsumer } from './lib/shard-run';
import { round } from './lib/stats';

const RECORDS_PER_BATCH = 20;
const WRITE_COMMANDS = ['UpdateItemCommand', 'PutItemCommand', 'DeleteItemCommand', 'BatchWriteItemCommand'];

export interface CostCase {
  recordBytes: number;
  records: number;
  maxRecords: number;
  /** processRecords calls with records. */
  batches: number;
  history: HistoryFigures;
  /** Per batch over the whole run (start-up and stop included). */
  perBatch: {
    historyEvents: number;
    historyBytes: number;
    workflowTasks: number;
    dynamoDbWrites: number;
    getRecordsCalls: number;
  };
  dynamoDbWritesByCommand: Record<string, number>;
}

export interface CostResult {
  emulator: string;
  cases: CostCase[];
  /** Steady-state history bytes per batch, 10 KB records ÷ 100 B records (1 = independent of record size). */
  bytesPerBatchRatio: number;
  recordDataInHistory: boolean;
}

export async function measureCost(context: BenchContext): Promise<CostResult> {
  const records = context.settings.quick ? 600 : 2_000;
  const taskQueue = uniqueName('bench-cost');
  const worker = await context.startWorker({ name: 'cost-worker', processorMode: 'count', taskQueue });
  const cases: CostCase[] = [];
  try {
    for (const recordBytes of [100, 10_240]) {
      const { streamName, shards } = await createStream(context.kinesis, 1, 'bench-cost');
      await prefill(context.kinesis, streamName, { kind: 'plain', recordBytes }, records);
      const before = (await worker.calls()).commands;
      let history: HistoryFigures | undefined;
      const run = await runShardConsumer(context, {
        worker,
        taskQueue,
        streamName,
        shard: shards[0]!,
        expectedRecords: records,
        // One run for the whole measurement: continue-as-new would split the history being measured.
        options: { initialPosition: 'TRIM_HORIZON', maxRecords: RECORDS_PER_BATCH, maxBatchesPerRun: 10_000 },
        beforeStop: async (handle) => {
          // Every record delivered; let the last checkpoint land, then read the history (the run is still going).
          await new Promise((r) => setTimeout(r, 500));
          history = await historyFigures(handle, Buffer.alloc(80, 'x'));
        },
      });
      const after = (await worker.calls()).commands;
      await deleteStream(context.kinesis, streamName);
      const delta = (name: string) => (after[name] ?? 0) - (before[name] ?? 0);
      const writesByCommand: Record<string, number> = {};
      for (const name of WRITE_COMMANDS) if (delta(name) !== 0) writesByCommand[name] = delta(name);
      const writes = WRITE_COMMANDS.reduce((sum, name) => sum + delta(name), 0);
      const figures = history!;
      const per = (value: number) => round(value / run.batches, 2);
      const costCase: CostCase = {
        recordBytes,
        records,
        maxRecords: RECORDS_PER_BATCH,
        batches: run.batches,
        history: figures,
        perBatch: {
          historyEvents: per(figures.events),
          historyBytes: per(figures.bytes),
          workflowTasks: per(figures.workflowTasks),
          dynamoDbWrites: per(writes),
          getRecordsCalls: per(delta('GetRecordsCommand')),
        },
        dynamoDbWritesByCommand: writesByCommand,
      };
      context.log(
        `  ${recordBytes} B records: ${run.batches} batches; steady state per batch: ${round(figures.steady.eventsPerBatch, 1)} events, ` +
          `${round(figures.steady.bytesPerBatch, 0)} B, ${round(figures.steady.workflowTasksPerBatch, 2)} workflow tasks, ` +
          `${round(figures.steady.markersPerBatch, 2)} checkpoint markers; whole run: ${costCase.perBatch.dynamoDbWrites} DynamoDB writes/batch`,
      );
      cases.push(costCase);
    }
  } finally {
    await worker.stop();
  }
  const [small, big] = cases as [CostCase, CostCase];
  return {
    emulator: context.stack.kinesisEmulator,
    cases,
    bytesPerBatchRatio: round(big.history.steady.bytesPerBatch / small.history.steady.bytesPerBatch, 3),
    recordDataInHistory: cases.some((c) => c.history.containsRecordData === true),
  };
}

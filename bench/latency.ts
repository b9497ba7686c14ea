/**
 * 3. Latency: put → processRecords at a steady low rate on one shard, with the default idleTimeBetweenReadsMs (1000).
 * The worker runs in this process, so the put time and the processRecords time come from the same clock
 * (performance.now()).
 */
import { performance } from 'node:perf_hooks';
import { PutRecordCommand } from '@aws-sdk/client-kinesis';
import type { WorkflowHandle } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { defaultTableName } from '../src/ids';
import type { ShardConsumerOptions } from '../src/options';
import type { RecordProcessorFactory } from '../src/record-processor';
import { createKclWorker } from '../src/worker';
import { createDynamoDbClient, createKinesisClient } from '../src/aws/clients';
import { workflowBundle } from '../test/helpers/bundle';
import { countCommands } from './lib/command-counter';
import type { BenchContext } from './lib/context';
import { historyEvents, timelineBetween } from './lib/history';
import { createStream, deleteStream, uniqueName } from './lib/kinesis';
import { startShardConsumer, STOP_TIMEOUT_MS, stopOrTerminate } from './lib/shard-run';
import { max, percentile, round } from './lib/stats';

const RATE = 20;
const RECORD_BYTES = 100;

export interface LatencyResult {
  name: string;
  emulator: string;
  options: ShardConsumerOptions;
  ratePerSec: number;
  samples: number;
  /** put sent → processRecords called (ms). */
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** put sent → put acknowledged (ms), for reference. */
  putP50Ms: number;
  /** GetRecords calls per second on the shard while producing (real Kinesis allows 5 per shard). */
  getRecordsPerSec: number;
}

async function measureOne(
  context: BenchContext,
  connection: NativeConnection,
  name: string,
  options: ShardConsumerOptions,
  seconds: number,
): Promise<LatencyResult> {
  const taskQueue = uniqueName('bench-latency');
  const { streamName, shards } = await createStream(context.kinesis, 1, 'bench-latency');
  const shard = shards[0]!;
  const applicationName = uniqueName('app-latency');
  await context.createLeaseTable(defaultTableName(applicationName));
  const processedAt = new Map<string, number>();
  const commands: Record<string, number> = {};
  const factory: RecordProcessorFactory = () => ({
    async processRecords({ records, checkpointer }) {
      const now = performance.now();
      for (const record of records) {
        const key = Buffer.from(record.data.subarray(0, 24)).toString('latin1').trim();
        if (!processedAt.has(key)) processedAt.set(key, now);
      }
      await checkpointer.checkpoint();
    },
  });
  const kinesis = countCommands(createKinesisClient({ ...context.stack.aws, maxAttempts: 1 }), commands);
  const dynamoDb = createDynamoDbClient({ ...context.stack.aws, maxAttempts: 1 });
  const worker = await createKclWorker({
    connection,
    namespace: context.stack.temporal.namespace,
    taskQueue,
    processors: { bench: factory },
    aws: { kinesis, dynamoDb },
    workflowBundle: await workflowBundle(),
    shutdownGraceTimeMs: 2_000,
  });
  const running = worker.run();
  running.catch(() => undefined);
  const put = async (key: string) => {
    const data = Buffer.alloc(RECORD_BYTES, ' ');
    data.write(key, 0, 'latin1');
    const sent = performance.now();
    await context.kinesis.send(new PutRecordCommand({ StreamName: streamName, PartitionKey: key, Data: data }));
    return { sent, acked: performance.now() };
  };
  const waitFor = async (keys: string[], timeoutMs: number) => {
    const deadline = Date.now() + timeoutMs;
    while (!keys.every((key) => processedAt.has(key))) {
      if (Date.now() > deadline)
        throw new Error(`latency: ${keys.filter((key) => !processedAt.has(key)).length} records not processed`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  let handle: WorkflowHandle | undefined;
  try {
    handle = await startShardConsumer(context, {
      taskQueue,
      applicationName,
      streamName,
      shard,
      options: { initialPosition: 'TRIM_HORIZON', ...options },
    });
    // Warm-up: the consumer is running, idling at the tip, and its path has run a few times.
    const warmup = [];
    for (let i = 0; i < RATE; i++) {
      warmup.push(`w${i}`);
      await put(`w${i}`);
      await new Promise((r) => setTimeout(r, 1000 / RATE));
    }
    await waitFor(warmup, 60_000);

    const puts = new Map<string, { sent: number; acked: number }>();
    const count = Math.round(seconds * RATE);
    const start = performance.now();
    const readsBefore = commands.GetRecordsCommand ?? 0;
    for (let i = 0; i < count; i++) {
      const due = start + (i * 1000) / RATE;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const key = `m${i}`;
      puts.set(key, await put(key));
    }
    const readsPerSec = ((commands.GetRecordsCommand ?? 0) - readsBefore) / ((performance.now() - start) / 1000);
    await waitFor([...puts.keys()], 30_000);
    if (process.env.BENCH_DEBUG_LATENCY) {
      const now = Date.now();
      context.log(timelineBetween(await historyEvents(handle), now - 3_000, now).join('\n'));
    }

    const latencies = [...puts.entries()].map(([key, { sent }]) => processedAt.get(key)! - sent);
    const putTimes = [...puts.values()].map(({ sent, acked }) => acked - sent);
    const result: LatencyResult = {
      name,
      emulator: context.stack.kinesisEmulator,
      options,
      ratePerSec: RATE,
      samples: latencies.length,
      p50Ms: round(percentile(latencies, 50), 0),
      p90Ms: round(percentile(latencies, 90), 0),
      p99Ms: round(percentile(latencies, 99), 0),
      maxMs: round(max(latencies), 0),
      putP50Ms: round(percentile(putTimes, 50), 1),
      getRecordsPerSec: round(readsPerSec, 1),
    };
    context.log(
      `  ${name}: ${result.samples} records at ${RATE}/s: p50 ${result.p50Ms} ms, p90 ${result.p90Ms} ms, p99 ${result.p99Ms} ms, max ${result.maxMs} ms; ${result.getRecordsPerSec} GetRecords/s`,
    );
    return result;
  } finally {
    // While the worker runs: a consumer asked to stop needs a worker to end on.
    if (handle) await stopOrTerminate(handle, STOP_TIMEOUT_MS, (line) => context.log(`  ${name}: ${line}`));
    await worker.shutdown();
    await running.catch(() => undefined);
    kinesis.destroy();
    dynamoDb.destroy();
    await deleteStream(context.kinesis, streamName);
  }
}

export async function measureLatency(context: BenchContext): Promise<LatencyResult[]> {
  const { quick } = context.settings;
  const connection = await NativeConnection.connect({ address: context.stack.temporal.address });
  try {
    const results = [
      await measureOne(context, connection, 'defaults (idleTimeBetweenReadsMs 1000)', {}, quick ? 8 : 60),
    ];
    if (!quick) {
      results.push(
        await measureOne(context, connection, 'idleTimeBetweenReadsMs 200', { idleTimeBetweenReadsMs: 200 }, 30),
      );
    }
    return results;
  } finally {
    await connection.close();
  }
}

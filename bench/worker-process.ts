/**
 * A temporal-kcl worker in a process of its own, for the benchmark: it can be measured (CPU seconds, peak RSS) and
 * killed (SIGKILL) on its own. Its record processor is a no-op that counts records and bytes, checkpoints the end of
 * every batch, and reports each batch to the parent over IPC. Its AWS clients count the commands they send.
 *
 * Usage (the benchmark does this): node --import tsx bench/worker-process.ts '<WorkerChildConfig as JSON>'
 *
 * It exits when the parent goes away (the IPC channel closes), so it never outlives the benchmark.
 */
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import {
  createDynamoDbClient,
  createFanOutKinesisClient,
  createKinesisClient,
  EMULATOR_CREDENTIALS,
} from '../src/aws/clients';
import type { RecordProcessorFactory } from '../src/record-processor';
import { createKclWorker } from '../src/worker';
import { workflowBundle } from '../test/helpers/bundle';
import { countCommands } from './lib/command-counter';
import type { WorkerChildCommand, WorkerChildConfig, WorkerChildMessage } from './lib/protocol';

const commands: Record<string, number> = {};

function send(message: WorkerChildMessage): void {
  process.send?.(message);
}

/** Reads the put time (13 ASCII digits, epoch ms) that starts a record's data; NaN if there is none. */
function putTime(data: Uint8Array): number {
  if (data.length < 13) return Number.NaN;
  let value = 0;
  for (let i = 0; i < 13; i++) {
    const digit = data[i]! - 48;
    if (digit < 0 || digit > 9) return Number.NaN;
    value = value * 10 + digit;
  }
  return value;
}

function benchProcessor(config: WorkerChildConfig): RecordProcessorFactory {
  return ({ applicationName, streamName, shardId }) => ({
    initialize() {
      send({ type: 'initialize', applicationName, streamName, shardId, at: Date.now() });
    },
    async processRecords({ records, checkpointer }) {
      const at = Date.now();
      let bytes = 0;
      let lagMaxMs = 0;
      let lagSumMs = 0;
      const lagsMs: number[] = [];
      const timed = config.processorMode !== 'count';
      for (const record of records) {
        bytes += record.data.byteLength;
        if (timed) {
          const lag = at - putTime(record.data);
          if (lag > lagMaxMs) lagMaxMs = lag;
          lagSumMs += lag;
          if (config.processorMode === 'latency') lagsMs.push(lag);
        }
      }
      if (records.length > 0) await checkpointer.checkpoint();
      send({
        type: 'batch',
        applicationName,
        streamName,
        shardId,
        records: records.length,
        bytes,
        at,
        ...(timed ? { lagMaxMs, lagSumMs } : {}),
        ...(config.processorMode === 'latency' ? { lagsMs } : {}),
      });
    },
    async shutdown(input) {
      if (input.checkpointer) await input.checkpointer.checkpoint();
    },
  });
}

async function main(): Promise<void> {
  // The parent went away (even killed): stop too. Until the worker runs, stopping is exiting.
  let stop: () => void = () => process.exit(0);
  process.once('disconnect', () => stop());
  if (!process.connected) process.exit(0);
  const raw = process.argv[2];
  if (!raw) throw new Error('usage: worker-process.ts <config as JSON>');
  const config = JSON.parse(raw) as WorkerChildConfig;
  Runtime.install({ shutdownSignals: [], logger: new DefaultLogger('ERROR') });
  const aws = {
    region: 'us-east-1',
    kinesisEndpoint: config.kinesisEndpoint,
    dynamoDbEndpoint: config.dynamoDbEndpoint,
    credentials: EMULATOR_CREDENTIALS,
    // As createKclWorker does: activities retry through Temporal retry policies, not inside the SDK.
    maxAttempts: 1,
  };
  const connection = await NativeConnection.connect({ address: config.temporalAddress });
  const worker = await createKclWorker({
    connection,
    namespace: config.namespace,
    taskQueue: config.taskQueue,
    processors: { bench: benchProcessor(config) },
    aws: {
      kinesis: countCommands(createKinesisClient(aws), commands),
      dynamoDb: countCommands(createDynamoDbClient(aws), commands),
      // For `retrieval: 'fan-out'` (SubscribeToShard over HTTP/2); opens no session until a shard subscribes.
      kinesisFanOut: countCommands(createFanOutKinesisClient(aws), commands),
    },
    workflowBundle: await workflowBundle(),
    ...(config.stickyQueueScheduleToStartTimeoutMs !== undefined
      ? { stickyQueueScheduleToStartTimeoutMs: config.stickyQueueScheduleToStartTimeoutMs }
      : {}),
    // The default shutdownGraceTimeMs (20 s): a SIGTERM hands the shards over as in production (share-drain measures it).
  });
  stop = () => {
    void worker.shutdown();
    // Never linger: a shutdown that takes too long ends with the process.
    setTimeout(() => process.exit(0), 25_000).unref();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  process.on('message', (message: WorkerChildCommand) => {
    if (message.type === 'calls') send({ type: 'calls', requestId: message.requestId, commands: { ...commands } });
  });
  const running = worker.run();
  send({ type: 'ready', workerQueue: worker.workerQueue });
  await running;
  await connection.close();
  process.exit(0);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});

/**
 * What every measurement gets: the local stack (Temporal dev server, kinesalite and dynalite in this process), clients
 * to it, the benchmark's settings, and helpers to start worker processes.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { KinesisClient } from '@aws-sdk/client-kinesis';
import { Client, Connection } from '@temporalio/client';
import { createDynamoDbClient, createKinesisClient } from '../../src/aws/clients';
import { CheckpointTable } from '../../src/checkpoint/checkpoint-table';
import type { DevStack } from '../../src/dev/dev-stack';
import type { Execution } from './executions';
import { type ProcessorMode, type StackEndpoints } from './protocol';
import { WorkerChild } from './children';
import { uniqueName } from './kinesis';

export interface BenchSettings {
  quick: boolean;
  /** Only the throughput cases whose name matches. */
  cases?: RegExp;
  /** Throughput repetitions instead of the default. */
  repetitions?: number;
  /** Shard counts of the scale measurement instead of the default. */
  scalePoints?: number[];
  /** Failover trials per settings instead of the default. */
  failoverTrials?: number;
  /** Names (prefixes) of the failover settings to measure instead of the library defaults and the relaxed settings. */
  failoverSets?: string[];
  /** Executions the actions and cpu measurements run (default: per-batch and windowed). */
  executions?: Execution[];
  /** Kills of the crash-failover measurement (default 10, quick 3). */
  crashKills?: number;
}

export interface BenchContext {
  settings: BenchSettings;
  stack: DevStack;
  endpoints: StackEndpoints;
  kinesis: KinesisClient;
  dynamoDb: DynamoDBClient;
  client: Client;
  logDir: string;
  log(line: string): void;
  /** Starts a worker process on its own task queue (or the given one). */
  startWorker(options: {
    name: string;
    processorMode: ProcessorMode;
    taskQueue?: string;
    stickyQueueScheduleToStartTimeoutMs?: number;
    /** Another Kinesis emulator than the stack's. */
    kinesisEndpoint?: string;
  }): Promise<WorkerChild>;
  /** Creates a lease table ahead of time, so a consumer's start-up time does not include CreateTable. */
  createLeaseTable(tableName: string): Promise<void>;
  close(): Promise<void>;
}

export async function createBenchContext(
  stack: DevStack,
  settings: BenchSettings,
  log: (line: string) => void,
): Promise<BenchContext> {
  const kinesis = createKinesisClient(stack.aws);
  const dynamoDb = createDynamoDbClient(stack.aws);
  const connection = await Connection.connect({ address: stack.temporal.address });
  const client = new Client({ connection, namespace: stack.temporal.namespace });
  const endpoints: StackEndpoints = {
    temporalAddress: stack.temporal.address,
    namespace: stack.temporal.namespace,
    kinesisEndpoint: stack.kinesisEndpoint,
    dynamoDbEndpoint: stack.dynamoDbEndpoint,
  };
  let workers = 0;
  return {
    settings,
    stack,
    endpoints,
    kinesis,
    dynamoDb,
    client,
    logDir: stack.logDir,
    log,
    startWorker: (options) =>
      WorkerChild.start(
        `${options.name}-${++workers}`,
        {
          ...endpoints,
          ...(options.kinesisEndpoint ? { kinesisEndpoint: options.kinesisEndpoint } : {}),
          taskQueue: options.taskQueue ?? uniqueName('bench-tq'),
          processorMode: options.processorMode,
          ...(options.stickyQueueScheduleToStartTimeoutMs !== undefined
            ? { stickyQueueScheduleToStartTimeoutMs: options.stickyQueueScheduleToStartTimeoutMs }
            : {}),
        },
        stack.logDir,
      ),
    createLeaseTable: (tableName) => new CheckpointTable({ dynamoDb, tableName }).ensureTable(),
    async close() {
      kinesis.destroy();
      dynamoDb.destroy();
      await connection.close();
    },
  };
}

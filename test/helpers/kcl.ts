import { executionInterceptor } from './execution';
import { after, before } from 'node:test';
import {
  CreateStreamCommand,
  DescribeStreamSummaryCommand,
  type KinesisClient,
  ListShardsCommand,
  PutRecordCommand,
  type Shard,
  waitUntilStreamExists,
} from '@aws-sdk/client-kinesis';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { createAwsClients } from '../../src/aws/clients';
import type { ShardProgress } from '../../src/consumer-types';
import { shardConsumerWorkflowId } from '../../src/ids';
import type { KinesisRecord, RecordProcessor, RecordProcessorFactory, ShutdownInput } from '../../src/record-processor';
import { createKclWorker, type KclWorker, type KclWorkerOptions } from '../../src/worker';
import { progressQuery, type ShardConsumerInput, shardConsumerWorkflow } from '../../src/workflows/shard-consumer';
import { workflowBundle } from './bundle';
import { installQuietRuntime } from './runtime';
import { type TestStack, testStack, uniqueName } from './stack';

/** Connections and clients to the test stack. */
export interface KclTestContext {
  stack: TestStack;
  kinesis: KinesisClient;
  dynamoDb: ReturnType<typeof createAwsClients>['dynamoDb'];
  client: Client;
  nativeConnection: NativeConnection;
  close(): Promise<void>;
}

export async function kclTestContext(): Promise<KclTestContext> {
  installQuietRuntime();
  const stack = await testStack();
  const { kinesis, dynamoDb } = createAwsClients(stack.aws);
  const connection = await Connection.connect({ address: stack.temporalAddress });
  const nativeConnection = await NativeConnection.connect({ address: stack.temporalAddress });
  return {
    stack,
    kinesis,
    dynamoDb,
    client: new Client({
      connection,
      namespace: stack.namespace,
      interceptors: { workflow: [executionInterceptor()].filter((interceptor) => interceptor !== undefined) },
    }),
    nativeConnection,
    async close() {
      kinesis.destroy();
      dynamoDb.destroy();
      await connection.close();
      await nativeConnection.close();
    },
  };
}

/**
 * Opens a test context before the tests of the enclosing `describe` and closes it after them (after `beforeClose`, e.g.
 * killing the child processes that use it). The object returned reads through to that context, so use it inside tests
 * and hooks only.
 */
export function kclTestContextForSuite(options: { beforeClose?: () => Promise<void> } = {}): KclTestContext {
  let opened: KclTestContext | undefined;
  before(async () => {
    opened = await kclTestContext();
  });
  after(async () => {
    await options.beforeClose?.();
    await opened?.close();
  });
  const current = (): KclTestContext => {
    if (!opened) throw new Error('the test context opens in a before hook: use it inside tests and hooks');
    return opened;
  };
  return {
    get stack() {
      return current().stack;
    },
    get kinesis() {
      return current().kinesis;
    },
    get dynamoDb() {
      return current().dynamoDb;
    },
    get client() {
      return current().client;
    },
    get nativeConnection() {
      return current().nativeConnection;
    },
    close: () => current().close(),
  };
}

/** A worker on the test stack with the given processors and a pre-built workflow bundle. */
export async function testWorker(
  context: KclTestContext,
  options: Partial<KclWorkerOptions> & Pick<KclWorkerOptions, 'processors' | 'taskQueue'>,
): Promise<KclWorker> {
  return createKclWorker({
    connection: context.nativeConnection,
    namespace: context.stack.namespace,
    aws: context.stack.aws,
    workflowBundle: await workflowBundle(),
    shutdownGraceTimeMs: 5_000,
    ...options,
  });
}

/** Creates a stream and waits until it is ACTIVE. */
export async function createStream(kinesis: KinesisClient, shards: number, prefix = 'stream'): Promise<string> {
  const StreamName = uniqueName(prefix);
  await kinesis.send(new CreateStreamCommand({ StreamName, ShardCount: shards }));
  await waitUntilStreamExists({ client: kinesis, maxWaitTime: 60, minDelay: 1 }, { StreamName });
  return StreamName;
}

/** The stream's shards, as ListShards lists them. */
export async function listShards(kinesis: KinesisClient, streamName: string): Promise<Shard[]> {
  return (await kinesis.send(new ListShardsCommand({ StreamName: streamName }))).Shards ?? [];
}

/** The id of the stream's first shard (of a one-shard stream, its only one). */
export async function firstShardId(kinesis: KinesisClient, streamName: string): Promise<string> {
  return (await listShards(kinesis, streamName))[0]?.ShardId as string;
}

/** Waits until the stream is ACTIVE again (after a split or a merge), checking every 50 ms up to `attempts` times. */
export async function waitUntilActive(kinesis: KinesisClient, streamName: string, attempts = 200): Promise<void> {
  for (let i = 0; i < attempts; i++) {
    const summary = await kinesis.send(new DescribeStreamSummaryCommand({ StreamName: streamName }));
    if (summary.StreamDescriptionSummary?.StreamStatus === 'ACTIVE') return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`stream ${streamName} did not become ACTIVE`);
}

/** Starts a ShardConsumerWorkflow on `taskQueue` under the shard's own workflow id (shardConsumerWorkflowId). */
export function startShardConsumer(
  context: KclTestContext,
  { taskQueue, ...input }: ShardConsumerInput & { taskQueue: string },
): Promise<WorkflowHandle<typeof shardConsumerWorkflow>> {
  return context.client.workflow.start(shardConsumerWorkflow, {
    taskQueue,
    workflowId: shardConsumerWorkflowId(input.applicationName, input.streamName, input.shardId),
    args: [input],
  });
}

/** Puts records one by one (in order per partition key); returns their sequence numbers. */
export async function putRecords(
  kinesis: KinesisClient,
  streamName: string,
  records: { partitionKey: string; data: Uint8Array | string; explicitHashKey?: string }[],
): Promise<{ shardId: string; sequenceNumber: string }[]> {
  const results = [];
  for (const record of records) {
    const put = await kinesis.send(
      new PutRecordCommand({
        StreamName: streamName,
        PartitionKey: record.partitionKey,
        Data: typeof record.data === 'string' ? Buffer.from(record.data) : record.data,
        ...(record.explicitHashKey ? { ExplicitHashKey: record.explicitHashKey } : {}),
      }),
    );
    results.push({ shardId: put.ShardId ?? '', sequenceNumber: put.SequenceNumber ?? '' });
  }
  return results;
}

/** What a recording processor saw, across every instance it made. */
export interface Recording {
  events: { shardId: string; kind: 'initialize' | 'process' | 'shutdown'; detail?: unknown }[];
  records: (KinesisRecord & { shardId: string; text: string })[];
  shutdowns: (Omit<ShutdownInput, 'checkpointer'> & { shardId: string })[];
  /** Resolves when `predicate` holds (checked after every event). */
  until(predicate: (recording: Recording) => boolean, timeoutMs?: number): Promise<void>;
}

export interface RecordingOptions {
  /** Checkpoint at the end of every batch. @default true */
  checkpointEveryBatch?: boolean;
  /** Checkpoint at shutdown (REQUESTED/TERMINATE). @default true */
  checkpointAtShutdown?: boolean;
  /** Called for each batch before it is recorded; may throw or checkpoint. */
  onBatch?: (input: Parameters<RecordProcessor['processRecords']>[0], shardId: string) => Promise<void> | void;
}

/** A processor factory that records everything it sees. */
export function recordingProcessor(options: RecordingOptions = {}): {
  factory: RecordProcessorFactory;
  recording: Recording;
} {
  const waiters = new Set<() => void>();
  const notify = () => {
    for (const waiter of waiters) waiter();
  };
  const recording: Recording = {
    events: [],
    records: [],
    shutdowns: [],
    until(predicate, timeoutMs = 60_000) {
      if (predicate(recording)) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(
            new Error(
              `condition not met within ${timeoutMs} ms; saw ${recording.records.length} records, ${recording.events.length} events`,
            ),
          );
        }, timeoutMs);
        const check = () => {
          if (predicate(recording)) {
            clearTimeout(timer);
            waiters.delete(check);
            resolve();
          }
        };
        waiters.add(check);
      });
    },
  };
  const factory: RecordProcessorFactory = ({ shardId }) => ({
    initialize(input) {
      recording.events.push({ shardId, kind: 'initialize', detail: input.startingPosition });
      notify();
    },
    async processRecords(input) {
      await options.onBatch?.(input, shardId);
      recording.events.push({ shardId, kind: 'process', detail: input.records.length });
      for (const record of input.records)
        recording.records.push({ ...record, shardId, text: Buffer.from(record.data).toString() });
      if (options.checkpointEveryBatch ?? true) await input.checkpointer.checkpoint();
      notify();
    },
    async shutdown(input) {
      recording.events.push({ shardId, kind: 'shutdown', detail: input.reason });
      recording.shutdowns.push({ shardId, reason: input.reason });
      if (input.checkpointer && (options.checkpointAtShutdown ?? true)) await input.checkpointer.checkpoint();
      notify();
    },
  });
  return { factory, recording };
}

/**
 * Polls a shard consumer's progress query until `predicate` holds (the workflow counts a batch only once its process
 * activity has returned, a little after the processor saw it); returns the last progress either way, so the caller's
 * assertions say what is missing.
 */
export async function progressWhen(
  handle: WorkflowHandle,
  predicate: (progress: ShardProgress) => boolean,
  timeoutMs = 30_000,
): Promise<ShardProgress> {
  const deadline = Date.now() + timeoutMs;
  let progress = await handle.query(progressQuery);
  while (!predicate(progress) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    progress = await handle.query(progressQuery);
  }
  return progress;
}

import {
  CreateStreamCommand,
  ListShardsCommand,
  SplitShardCommand,
  waitUntilStreamExists,
} from '@aws-sdk/client-kinesis';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { createAwsClients } from '../aws/clients';
import { getStreamProgress, type StreamStatus, startStreamConsumer, stopStreamConsumer } from '../client/consumers';
import { type DevStack, type DevStackOptions, startDevStack } from '../dev/dev-stack';
import { createKclWorker, type KclWorker, type KclWorkerOptions } from '../worker';
import { DeliveryLedger, demoProcessor } from './demo-processor';
import { DemoProducer } from './producer';

export interface DemoOptions {
  /** Shards of the demo stream. @default 4 */
  shards?: number;
  /** User records per second the producer writes. @default 100 */
  rate?: number;
  /** Split a shard this long after the consumer starts. @default 15000 */
  splitAfterMs?: number;
  /** Produce for this long, then stop and check; undefined runs until `until` resolves. @default undefined */
  durationMs?: number;
  /** Resolves when the demo should wrap up (e.g. on Ctrl-C). */
  until?: Promise<unknown>;
  /** Ports and emulator of the local stack. */
  stack?: DevStackOptions;
  /** Pre-bundled workflow code (tests). @default bundled at start-up */
  workflowBundle?: KclWorkerOptions['workflowBundle'];
  /** Receives progress lines; `live` is the whole refreshed screen. */
  log?: (line: string) => void;
  live?: (screen: string) => void;
  /** Runs after production stopped and everything was delivered, before the consumer stops: the stack is still up. */
  beforeStop?: (context: DemoContext) => Promise<void>;
}

export interface DemoContext {
  stack: DevStack;
  streamName: string;
  applicationName: string;
  client: Client;
  uiLink: string | undefined;
}

export interface DemoSummary {
  streamName: string;
  applicationName: string;
  produced: number;
  aggregates: number;
  delivered: number;
  duplicates: number;
  outOfOrder: number;
  shardConsumers: number;
  split: boolean;
  stopResult: Awaited<ReturnType<typeof stopStreamConsumer>>;
}

const APPLICATION = 'demo';
const TASK_QUEUE = 'temporal-kcl-demo';

/** The Temporal UI's workflow list, filtered to this stream's consumers. */
export function uiWorkflowsLink(uiUrl: string | undefined, namespace: string, streamName: string): string | undefined {
  if (!uiUrl) return undefined;
  return `${uiUrl}/namespaces/${namespace}/workflows?query=${encodeURIComponent(`KclStream="${streamName}"`)}`;
}

async function splitFirstShard(
  kinesis: ReturnType<typeof createAwsClients>['kinesis'],
  streamName: string,
): Promise<string | undefined> {
  const { Shards = [] } = await kinesis.send(new ListShardsCommand({ StreamName: streamName }));
  const open = Shards.find((shard) => !shard.SequenceNumberRange?.EndingSequenceNumber);
  if (!open?.ShardId || !open.HashKeyRange?.StartingHashKey || !open.HashKeyRange.EndingHashKey) return undefined;
  const middle = (BigInt(open.HashKeyRange.StartingHashKey) + BigInt(open.HashKeyRange.EndingHashKey)) / 2n;
  await kinesis.send(
    new SplitShardCommand({
      StreamName: streamName,
      ShardToSplit: open.ShardId,
      NewStartingHashKey: middle.toString(),
    }),
  );
  return open.ShardId;
}

/**
 * The main job in one run: the local stack, a stream with several shards, a producer of plain and KPL-aggregated
 * records, a worker with a processor that checks what it gets, the consumer started, a shard split midway, live
 * progress and the Temporal UI link; then a stop and a check that every record arrived once, in order per key.
 */
export async function runDemo(options: DemoOptions = {}): Promise<DemoSummary> {
  const log = options.log ?? ((line: string) => console.log(line));
  const live = options.live ?? log;
  log('starting the local stack (Temporal with its UI, kinesis-local, dynalite)...');
  const stack = await startDevStack({ ...options.stack, log: (line) => log(`  ${line}`) });
  let worker: KclWorker | undefined;
  let running: Promise<void> | undefined;
  let connection: Connection | undefined;
  let nativeConnection: NativeConnection | undefined;
  const { kinesis, dynamoDb } = createAwsClients(stack.aws);
  try {
    const streamName = `demo-${new Date()
      .toISOString()
      .replace(/[^0-9]/g, '')
      .slice(0, 14)}`;
    await kinesis.send(new CreateStreamCommand({ StreamName: streamName, ShardCount: options.shards ?? 4 }));
    await waitUntilStreamExists({ client: kinesis, maxWaitTime: 60, minDelay: 1 }, { StreamName: streamName });
    log(`created stream ${streamName} with ${options.shards ?? 4} shards`);

    try {
      Runtime.install({ logger: new DefaultLogger('WARN') });
    } catch {
      // already installed by the host process
    }
    const ledger = new DeliveryLedger();
    nativeConnection = await NativeConnection.connect({ address: stack.temporal.address });
    log(
      options.workflowBundle
        ? 'starting the worker...'
        : 'starting the worker (bundling workflow code takes a few seconds)...',
    );
    worker = await createKclWorker({
      processors: { demo: demoProcessor(ledger) },
      connection: nativeConnection,
      namespace: stack.temporal.namespace,
      taskQueue: TASK_QUEUE,
      aws: stack.aws,
      ...(options.workflowBundle ? { workflowBundle: options.workflowBundle } : {}),
    });
    running = worker.run();
    connection = await Connection.connect({ address: stack.temporal.address });
    const client = new Client({ connection, namespace: stack.temporal.namespace });

    const producer = new DemoProducer(kinesis, { streamName, rate: options.rate ?? 100 });
    producer.start();
    await startStreamConsumer(client, {
      applicationName: APPLICATION,
      streamName,
      processor: 'demo',
      taskQueue: TASK_QUEUE,
      shardSyncIntervalMs: 2_000,
      shardOptions: { initialPosition: 'TRIM_HORIZON', idleTimeBetweenReadsMs: 500, parentShardPollIntervalMs: 1_000 },
    });
    const uiLink = uiWorkflowsLink(stack.temporal.uiUrl, stack.temporal.namespace, streamName);
    log(`consumer started; Temporal UI: ${uiLink ?? '(headless)'}`);

    const started = Date.now();
    let split: string | undefined;
    let splitAttempted = false;
    let status: StreamStatus | undefined;
    const statusTable = (current: StreamStatus) =>
      current.shards
        .map(
          (shard) =>
            `  ${shard.shardId}  ${(shard.progress?.state ?? shard.state).padEnd(17)} records ${String(shard.progress?.counters.recordsProcessed ?? 0).padStart(7)}  behind ${shard.progress?.millisBehindLatest ?? '-'} ms`,
        )
        .join('\n');
    const screen = (phase: string) =>
      [
        `temporal-kcl demo: stream ${streamName}, application ${APPLICATION} - ${phase}`,
        `produced ${producer.produced} user records (${producer.aggregates} KPL aggregates); delivered ${ledger.unique}, duplicates ${ledger.duplicates}, out of order ${ledger.outOfOrder}`,
        split
          ? `split ${split} into two children`
          : `a shard is split ${Math.max(0, Math.round(((options.splitAfterMs ?? 15_000) - (Date.now() - started)) / 1000))} s after start`,
        status ? statusTable(status) : '',
        `Temporal UI: ${uiLink ?? '(headless)'}`,
      ].join('\n');

    let finished = false;
    void options.until?.then(() => {
      finished = true;
    });
    while (!finished && (options.durationMs === undefined || Date.now() - started < options.durationMs)) {
      if (!splitAttempted && Date.now() - started >= (options.splitAfterMs ?? 15_000)) {
        splitAttempted = true;
        split = await splitFirstShard(kinesis, streamName);
        log(`split ${split ?? '(no open shard)'}`);
      }
      status = await getStreamProgress(client, { applicationName: APPLICATION, streamName }).catch(() => status);
      live(screen('running (Ctrl-C to stop)'));
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
    await producer.stop();
    const deadline = Date.now() + 120_000;
    while (ledger.unique < producer.produced && Date.now() < deadline) {
      status = await getStreamProgress(client, { applicationName: APPLICATION, streamName }).catch(() => status);
      live(screen('producer stopped; waiting for the consumers to catch up'));
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    await options.beforeStop?.({ stack, streamName, applicationName: APPLICATION, client, uiLink });
    log('stopping the consumer (every shard consumer gets shutdown(REQUESTED))...');
    const stopResult = await stopStreamConsumer(client, { applicationName: APPLICATION, streamName, wait: true });
    status = await getStreamProgress(client, { applicationName: APPLICATION, streamName }).catch(() => status);
    live(screen('stopped'));
    return {
      streamName,
      applicationName: APPLICATION,
      produced: producer.produced,
      aggregates: producer.aggregates,
      delivered: ledger.unique,
      duplicates: ledger.duplicates,
      outOfOrder: ledger.outOfOrder,
      shardConsumers: stopResult?.started ?? 0,
      split: split !== undefined,
      stopResult,
    };
  } finally {
    await worker?.shutdown();
    await running?.catch(() => undefined);
    await connection?.close();
    await nativeConnection?.close();
    kinesis.destroy();
    dynamoDb.destroy();
    await stack.stop();
  }
}

/**
 * Enhanced fan-out end to end: a stream consumer with `retrieval: 'fan-out'` registers its consumer, every shard reads
 * a SubscribeToShard push stream through the SDK's HTTP/2 client, and the processor gets every record once and in
 * order, through subscriptions that end and are renewed every 2 s, and through the faults AWS can send (throttling, an
 * in-stream InternalFailure, a reset stream, a dropped connection, another reader taking the subscription over). Kinesis
 * is reached through a fan-out server of the test's own (src/dev/fan-out-server.ts, in front of the stack's
 * kinesis-local): short subscriptions and injected faults. The suites of `npm test`'s fan-out pass check the rest
 * (failover, crashes, resharding, HALT, dead-letter, the CLI) with the same files as polling.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  DescribeStreamConsumerCommand,
  DescribeStreamSummaryCommand,
  KinesisClient,
  ListShardsCommand,
  SubscribeToShardCommand,
} from '@aws-sdk/client-kinesis';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { createKinesisClient, EMULATOR_CREDENTIALS } from '../../src/aws/clients';
import { type FanOutServer, startFanOutServer } from '../../src/dev/fan-out-server';
import { streamConsumerWorkflowId } from '../../src/ids';
import { validateShardConsumerOptions } from '../../src/options';
import { stopSignal, streamConsumerWorkflow, streamProgressQuery } from '../../src/workflows/stream-consumer';
import { workflowBundle } from '../helpers/bundle';
import { createStream, putRecords, type Recording, recordingProcessor } from '../helpers/kcl';
import { installQuietRuntime } from '../helpers/runtime';
import { testStack, uniqueName } from '../helpers/stack';
import { createKclWorker } from '../../src/worker';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Each partition key's records, in the order the processor got them, must be the order they were put, once each. */
function assertOnceInOrder(recording: Recording, put: Map<string, string[]>): void {
  const seen = new Map<string, string[]>();
  for (const record of recording.records) {
    const list = seen.get(record.partitionKey) ?? [];
    list.push(record.text);
    seen.set(record.partitionKey, list);
  }
  for (const [key, texts] of put) assert.deepEqual(seen.get(key), texts, `partition key ${key}`);
  assert.equal(
    recording.records.length,
    [...put.values()].reduce((sum, texts) => sum + texts.length, 0),
  );
}

describe('enhanced fan-out (retrieval: fan-out)', () => {
  let fanOut: FanOutServer;
  let kinesis: KinesisClient;
  let connection: Connection;
  let nativeConnection: NativeConnection;
  let client: Client;
  let aws: Awaited<ReturnType<typeof testStack>>['aws'];

  before(async () => {
    installQuietRuntime();
    const stack = await testStack();
    fanOut = await startFanOutServer({
      emulatorEndpoint: stack.aws.kinesisEndpoint,
      subscriptionMs: 2_000,
      takeoverMs: 1_000,
      emptyEventMs: 500,
    });
    aws = { ...stack.aws, kinesisEndpoint: fanOut.endpoint };
    kinesis = createKinesisClient(aws);
    connection = await Connection.connect({ address: stack.temporalAddress });
    nativeConnection = await NativeConnection.connect({ address: stack.temporalAddress });
    client = new Client({ connection, namespace: stack.namespace });
  });
  after(async () => {
    kinesis?.destroy();
    await connection?.close();
    await nativeConnection?.close();
    await fanOut?.close();
  });

  /** Starts a stream consumer with fan-out and a worker; runs `body` while both run; stops it (and deregisters). */
  async function consume(
    streamName: string,
    body: (ctx: { recording: Recording; applicationName: string }) => Promise<void>,
    options: { consumerName?: string } = {},
  ) {
    const applicationName = uniqueName('fan-out-app');
    const taskQueue = uniqueName('tq');
    const { factory, recording } = recordingProcessor();
    const worker = await createKclWorker({
      connection: nativeConnection,
      namespace: (await testStack()).namespace,
      aws,
      taskQueue,
      processors: { recorder: factory },
      workflowBundle: await workflowBundle(),
      shutdownGraceTimeMs: 5_000,
    });
    const handle = await client.workflow.start(streamConsumerWorkflow, {
      taskQueue,
      workflowId: streamConsumerWorkflowId(applicationName, streamName),
      args: [
        {
          applicationName,
          streamName,
          processor: 'recorder',
          shardSyncIntervalMs: 1_000,
          shardOptions: {
            retrieval: 'fan-out',
            ...(options.consumerName ? { consumerName: options.consumerName } : {}),
            initialPosition: 'TRIM_HORIZON',
            windowDurationMs: 3_000,
          },
        },
      ],
    });
    const result = await worker.runUntil(
      (async () => {
        await body({ recording, applicationName });
        await handle.signal(stopSignal, { deregisterConsumer: true });
        return handle.result();
      })(),
    );
    return { recording, result, applicationName };
  }

  test('registers the consumer; every record once and in order through renewals; stop --deregister removes it', async () => {
    const streamName = await createStream(kinesis, 2, 'fan-out');
    const streamArn = (await kinesis.send(new DescribeStreamSummaryCommand({ StreamName: streamName })))
      .StreamDescriptionSummary?.StreamARN;
    const put = new Map<string, string[]>();
    const subscriptionsBefore = fanOut.stats.subscriptions;
    const { recording, result, applicationName } = await consume(
      streamName,
      async ({ recording: seen, applicationName: app }) => {
        // The consumer is registered under the application's name, and ACTIVE, before any shard reads.
        const handle = client.workflow.getHandle(streamConsumerWorkflowId(app, streamName));
        let progress = await handle.query(streamProgressQuery);
        for (let i = 0; i < 100 && !progress.fanOut; i++) {
          await sleep(100);
          progress = await handle.query(streamProgressQuery);
        }
        assert.equal(progress.fanOut?.consumerName, app);
        const described = await kinesis.send(
          new DescribeStreamConsumerCommand({ StreamARN: streamArn, ConsumerName: app }),
        );
        assert.equal(described.ConsumerDescription?.ConsumerStatus, 'ACTIVE');
        assert.equal(described.ConsumerDescription?.ConsumerARN, progress.fanOut?.consumerArn);
        // Bursts 1.5 s apart for 7.5 s: the 2 s subscriptions end and are renewed between and during them.
        for (let burst = 0; burst < 5; burst++) {
          const records = Array.from({ length: 20 }, (_, i) => ({
            partitionKey: `key-${i % 7}`,
            data: `b${burst}-r${i}`,
          }));
          for (const record of records)
            put.set(record.partitionKey, [...(put.get(record.partitionKey) ?? []), record.data]);
          await putRecords(kinesis, streamName, records);
          await sleep(1_500);
        }
        await seen.until((r) => r.records.length >= 100, 30_000);
      },
    );
    assertOnceInOrder(recording, put);
    // Renewed: far more subscriptions than the 2 shards' first ones.
    assert.ok(
      fanOut.stats.subscriptions - subscriptionsBefore >= 6,
      `subscriptions: ${fanOut.stats.subscriptions - subscriptionsBefore}`,
    );
    assert.ok(
      recording.shutdowns.every((shutdown) => shutdown.reason === 'REQUESTED'),
      JSON.stringify(recording.shutdowns),
    );
    assert.ok(result.deregisteredConsumer, 'the stop deregistered the consumer');
    await assert.rejects(
      kinesis.send(new DescribeStreamConsumerCommand({ StreamARN: streamArn, ConsumerName: applicationName })),
      { name: 'ResourceNotFoundException' },
    );
  });

  test('faults AWS can send mid-stream lose nothing and repeat nothing; a reader that takes the subscription over is taken back from', async () => {
    const streamName = await createStream(kinesis, 1, 'fan-out-faults');
    const shardId = (await kinesis.send(new ListShardsCommand({ StreamName: streamName }))).Shards?.[0]?.ShardId ?? '';
    const put = new Map<string, string[]>();
    const rejectedBefore = fanOut.stats.rejectedInUse + fanOut.stats.takenOver;
    const faults = [
      { kind: 'reset', afterEvents: 1 },
      { kind: 'InternalFailureException', afterEvents: 1 },
      { kind: 'LimitExceededException' },
      { kind: 'disconnect', afterEvents: 1 },
    ] as const;
    const { recording } = await consume(streamName, async ({ recording: seen, applicationName }) => {
      const producer = (async () => {
        for (let i = 0; i < 60; i++) {
          const record = { partitionKey: `key-${i % 5}`, data: `r${i}` };
          put.set(record.partitionKey, [...(put.get(record.partitionKey) ?? []), record.data]);
          await putRecords(kinesis, streamName, [record]);
          await sleep(100);
        }
      })();
      await seen.until((r) => r.records.length >= 3, 30_000);
      for (const fault of faults) {
        fanOut.inject(shardId, fault);
        await sleep(800);
      }
      // Another reader subscribes through the same consumer: it takes the shard's subscription over (after the
      // takeover time); the consumer's read fails with ResourceInUse, and its retry takes it back.
      const streamArn = (await kinesis.send(new DescribeStreamSummaryCommand({ StreamName: streamName })))
        .StreamDescriptionSummary?.StreamARN;
      const consumerArn = (
        await kinesis.send(new DescribeStreamConsumerCommand({ StreamARN: streamArn, ConsumerName: applicationName }))
      ).ConsumerDescription?.ConsumerARN;
      const intruder = new KinesisClient({
        region: 'us-east-1',
        endpoint: fanOut.endpoint,
        credentials: EMULATOR_CREDENTIALS,
        maxAttempts: 1,
      });
      try {
        // Until the intruder meets the consumer's subscription (refused within the takeover time, or taking it over).
        for (let i = 0; i < 40 && fanOut.stats.rejectedInUse + fanOut.stats.takenOver === rejectedBefore; i++) {
          await sleep(300);
          if (!fanOut.activeSubscriptions().some((open) => open.endsWith(shardId))) continue;
          const abort = new AbortController();
          const out = await intruder
            .send(
              new SubscribeToShardCommand({
                ConsumerARN: consumerArn,
                ShardId: shardId,
                StartingPosition: { Type: 'LATEST' },
              }),
              { abortSignal: abort.signal },
            )
            .catch((error: unknown) => error);
          if (!(out instanceof Error)) await sleep(300);
          abort.abort();
        }
      } finally {
        intruder.destroy();
      }
      await producer;
      await seen.until((r) => r.records.length >= 60, 60_000);
    });
    assertOnceInOrder(recording, put);
    assert.ok(fanOut.stats.rejectedInUse + fanOut.stats.takenOver > rejectedBefore, JSON.stringify(fanOut.stats));
  });

  test('fan-out options: runs windowed, refuses per-batch, names its consumer', () => {
    const fanOutOptions = validateShardConsumerOptions({ retrieval: 'fan-out' });
    assert.ok(fanOutOptions.ok && fanOutOptions.options.execution === 'windowed');
    const polling = validateShardConsumerOptions({});
    assert.ok(polling.ok && polling.options.execution === 'per-batch' && polling.options.retrieval === 'polling');
    const perBatch = validateShardConsumerOptions({ retrieval: 'fan-out', execution: 'per-batch' });
    assert.ok(!perBatch.ok && /windowed/.test(perBatch.issues.join()), JSON.stringify(perBatch));
    const badName = validateShardConsumerOptions({ retrieval: 'fan-out', consumerName: 'no spaces allowed' });
    assert.ok(!badName.ok && /consumerName/.test(badName.issues.join()), JSON.stringify(badName));
    const nameWithoutFanOut = validateShardConsumerOptions({ consumerName: 'x' });
    assert.ok(!nameWithoutFanOut.ok && /fan-out/.test(nameWithoutFanOut.issues.join()));
  });
});

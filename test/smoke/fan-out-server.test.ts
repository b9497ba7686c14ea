/**
 * The fan-out test path: the unmodified AWS SDK (its default HTTP/2 handler; only endpoint, region and credentials set)
 * subscribes through the fan-out server (src/dev/fan-out-server.ts) in front of kinesis-local, with AWS's
 * SubscribeToShard semantics: push, renewal from the continuation, ResourceInUse and takeover, faults, and ChildShards
 * at shard end. The first four tests start a server of their own with short lifetimes (and fault injection, which is
 * in-process); the last one goes through the dev stack's own fan-out endpoint, as `temporal-kcl dev` hands it out.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  CreateStreamCommand,
  DescribeStreamConsumerCommand,
  DescribeStreamSummaryCommand,
  KinesisClient,
  ListShardsCommand,
  PutRecordsCommand,
  RegisterStreamConsumerCommand,
  SplitShardCommand,
  SubscribeToShardCommand,
  type StartingPosition,
  type SubscribeToShardEvent,
} from '@aws-sdk/client-kinesis';
import { createKinesisClient } from '../../src/aws/clients';
import { startFanOutServer, type FanOutServer } from '../../src/dev/fan-out-server';
import { testStack, uniqueName } from '../helpers/stack';

interface Subscription {
  events: SubscribeToShardEvent[];
  /** Why reading stopped: the stream completed, the reader stopped it, or the error it threw. */
  ended: 'completed' | 'stopped' | Error;
}

/** Reads one subscription until it ends or `until` says stop (then aborts it: leaving the loop alone keeps it open). */
async function readSubscription(
  client: KinesisClient,
  input: { ConsumerARN: string; ShardId: string; StartingPosition: StartingPosition },
  until: (events: SubscribeToShardEvent[]) => boolean = () => false,
): Promise<Subscription> {
  const events: SubscribeToShardEvent[] = [];
  const abort = new AbortController();
  const output = await client.send(new SubscribeToShardCommand(input), { abortSignal: abort.signal });
  try {
    for await (const event of output.EventStream ?? []) {
      if (!event.SubscribeToShardEvent) continue;
      events.push(event.SubscribeToShardEvent);
      if (until(events)) {
        abort.abort();
        return { events, ended: 'stopped' };
      }
    }
    return { events, ended: 'completed' };
  } catch (error) {
    return { events, ended: error instanceof Error ? error : new Error(String(error)) };
  }
}

const sequenceNumbers = (events: SubscribeToShardEvent[]) =>
  events.flatMap((event) => event.Records ?? []).map((record) => record.SequenceNumber);

/** The fan-out client as the product builds it for AWS: the SDK's default (HTTP/2) handler. */
function http2Client(
  endpoint: string,
  aws: { region: string; credentials: { accessKeyId: string; secretAccessKey: string } },
) {
  return new KinesisClient({
    region: aws.region,
    endpoint,
    credentials: { ...aws.credentials },
    // One attempt, so each answer of the server (throttling included) reaches the test as it is.
    maxAttempts: 1,
  });
}

describe('enhanced fan-out through the fan-out server', () => {
  let fanOut: FanOutServer;
  let polling: KinesisClient;
  let fanOutClient: KinesisClient;
  let streamName: string;
  let consumerArn: string;
  let shardId: string;

  async function waitActive() {
    for (;;) {
      const summary = await polling.send(new DescribeStreamSummaryCommand({ StreamName: streamName }));
      if (summary.StreamDescriptionSummary?.StreamStatus === 'ACTIVE') return summary.StreamDescriptionSummary;
      await sleep(50);
    }
  }

  async function put(count: number, tag: string): Promise<string[]> {
    const result = await polling.send(
      new PutRecordsCommand({
        StreamName: streamName,
        Records: Array.from({ length: count }, (_, i) => ({
          Data: Buffer.from(`${tag}-${i}`),
          PartitionKey: `pk-${i}`,
        })),
      }),
    );
    return (result.Records ?? []).map((record) => record.SequenceNumber ?? '');
  }

  before(async () => {
    const stack = await testStack();
    fanOut = await startFanOutServer({
      emulatorEndpoint: stack.aws.kinesisEndpoint,
      subscriptionMs: 2_000,
      takeoverMs: 1_000,
      emptyEventMs: 300,
    });
    // The product's clients as built for AWS; only the endpoint is the fan-out server's.
    polling = createKinesisClient({ ...stack.aws, kinesisEndpoint: fanOut.endpoint });
    fanOutClient = http2Client(fanOut.endpoint, stack.aws);
    streamName = uniqueName('fan-out');
    await polling.send(new CreateStreamCommand({ StreamName: streamName, ShardCount: 1 }));
    const summary = await waitActive();
    const registered = await fanOutClient.send(
      new RegisterStreamConsumerCommand({ StreamARN: summary.StreamARN, ConsumerName: 'app' }),
    );
    consumerArn = registered.Consumer?.ConsumerARN ?? '';
    for (;;) {
      const consumer = await fanOutClient.send(new DescribeStreamConsumerCommand({ ConsumerARN: consumerArn }));
      if (consumer.ConsumerDescription?.ConsumerStatus === 'ACTIVE') break;
      await sleep(50);
    }
    shardId = (await polling.send(new ListShardsCommand({ StreamName: streamName }))).Shards?.[0]?.ShardId ?? '';
  });

  after(async () => {
    polling?.destroy();
    fanOutClient?.destroy();
    await fanOut?.close();
  });

  test('records put after subscribing are pushed; renewing after the continuation loses and repeats none', async () => {
    const first = readSubscription(fanOutClient, {
      ConsumerARN: consumerArn,
      ShardId: shardId,
      StartingPosition: { Type: 'TRIM_HORIZON' },
    });
    await sleep(200);
    const put1 = await put(4, 'a');
    const sub1 = await first;
    assert.equal(sub1.ended, 'completed');
    assert.deepEqual(sequenceNumbers(sub1.events), put1);
    const continuation = sub1.events.at(-1)?.ContinuationSequenceNumber;
    assert.equal(continuation, put1.at(-1));

    const put2 = await put(3, 'b'); // while no subscription is open
    const second = readSubscription(
      fanOutClient,
      {
        ConsumerARN: consumerArn,
        ShardId: shardId,
        StartingPosition: { Type: 'AFTER_SEQUENCE_NUMBER', SequenceNumber: continuation },
      },
      (events) => sequenceNumbers(events).length >= 5,
    );
    await sleep(200);
    const put3 = await put(2, 'c');
    const sub2 = await second;
    assert.deepEqual(sequenceNumbers(sub2.events), [...put2, ...put3]);
  });

  test('a second subscription within the takeover time is refused; a later one takes over', async () => {
    const position = { ConsumerARN: consumerArn, ShardId: shardId, StartingPosition: { Type: 'LATEST' as const } };
    const first = readSubscription(fanOutClient, position);
    await sleep(200);
    await assert.rejects(
      fanOutClient.send(new SubscribeToShardCommand(position)),
      (error: Error) => error.name === 'ResourceInUseException',
    );
    await sleep(1_000);
    const takeover = await readSubscription(fanOutClient, position, (events) => events.length >= 1);
    assert.equal(takeover.ended, 'stopped');
    const old = await first;
    assert.ok(old.ended instanceof Error && old.ended.name === 'ResourceInUseException', String(old.ended));
  });

  test('injected faults reach the reader as the SDK reports them', async () => {
    const position = { ConsumerARN: consumerArn, ShardId: shardId, StartingPosition: { Type: 'LATEST' as const } };
    fanOut.inject(shardId, { kind: 'LimitExceededException' });
    await assert.rejects(fanOutClient.send(new SubscribeToShardCommand(position)), { name: 'LimitExceededException' });
    fanOut.inject(shardId, { kind: 'InternalFailureException', afterEvents: 1 });
    const failed = await readSubscription(fanOutClient, position);
    assert.ok(failed.ended instanceof Error && failed.ended.name === 'InternalFailureException', String(failed.ended));
    fanOut.inject(shardId, { kind: 'reset', afterEvents: 1 });
    const reset = await readSubscription(fanOutClient, position);
    assert.ok(reset.ended instanceof Error && /NGHTTP2_INTERNAL_ERROR/.test(reset.ended.message), String(reset.ended));
  });

  test('after a split the parent subscription ends with ChildShards and no continuation', async () => {
    const shards = (await polling.send(new ListShardsCommand({ StreamName: streamName }))).Shards ?? [];
    const ending = BigInt(shards[0]?.HashKeyRange?.EndingHashKey ?? '0');
    await polling.send(
      new SplitShardCommand({ StreamName: streamName, ShardToSplit: shardId, NewStartingHashKey: String(ending / 2n) }),
    );
    await waitActive();
    const parent = await readSubscription(fanOutClient, {
      ConsumerARN: consumerArn,
      ShardId: shardId,
      StartingPosition: { Type: 'TRIM_HORIZON' },
    });
    assert.equal(parent.ended, 'completed');
    const last = parent.events.at(-1);
    assert.equal(last?.ContinuationSequenceNumber, undefined);
    assert.deepEqual(
      last?.ChildShards?.map((child) => child.ParentShards),
      [[shardId], [shardId]],
    );
    assert.equal(sequenceNumbers(parent.events).length, 9); // every record of the shard, then the end
  });
});

describe("the dev stack's fan-out endpoint", () => {
  test('serves registration and SubscribeToShard over HTTP/2 and forwards HTTP/1.1 to kinesis-local', async () => {
    // Prepare: a stream made through the fan-out endpoint with the HTTP/1.1 client, a consumer registered over HTTP/2.
    const stack = await testStack();
    assert.ok(stack.kinesisFanOutEndpoint, 'the stack runs kinesis-local, so it has a fan-out endpoint');
    assert.notEqual(stack.kinesisFanOutEndpoint, stack.aws.kinesisEndpoint);
    const polling = createKinesisClient({ ...stack.aws, kinesisEndpoint: stack.kinesisFanOutEndpoint });
    const direct = createKinesisClient(stack.aws);
    const client = http2Client(stack.kinesisFanOutEndpoint, stack.aws);
    try {
      const StreamName = uniqueName('fan-out-stack');
      await polling.send(new CreateStreamCommand({ StreamName, ShardCount: 1 }));
      let summary = await direct.send(new DescribeStreamSummaryCommand({ StreamName }));
      while (summary.StreamDescriptionSummary?.StreamStatus !== 'ACTIVE') {
        await sleep(50);
        summary = await direct.send(new DescribeStreamSummaryCommand({ StreamName }));
      }
      const { Consumer } = await client.send(
        new RegisterStreamConsumerCommand({
          StreamARN: summary.StreamDescriptionSummary.StreamARN,
          ConsumerName: 'app',
        }),
      );
      const ConsumerARN = Consumer?.ConsumerARN ?? '';
      let status = Consumer?.ConsumerStatus;
      while (status !== 'ACTIVE') {
        await sleep(50);
        status = (await client.send(new DescribeStreamConsumerCommand({ ConsumerARN }))).ConsumerDescription
          ?.ConsumerStatus;
      }
      const ShardId = (await direct.send(new ListShardsCommand({ StreamName }))).Shards?.[0]?.ShardId ?? '';

      // Act: subscribe from LATEST, then put records straight into kinesis-local.
      const reading = readSubscription(
        client,
        { ConsumerARN, ShardId, StartingPosition: { Type: 'LATEST' } },
        // The stack's subscriptions last 5 minutes: give up after ~15 empty events rather than wait for the end.
        (events) => sequenceNumbers(events).length >= 3 || events.length >= 15,
      );
      await sleep(300);
      const put = await direct.send(
        new PutRecordsCommand({
          StreamName,
          Records: ['x', 'y', 'z'].map((tag) => ({ Data: Buffer.from(tag), PartitionKey: tag })),
        }),
      );
      const subscription = await reading;

      // Assess: the records were pushed, in order, with their data.
      assert.equal(subscription.ended, 'stopped');
      assert.deepEqual(
        sequenceNumbers(subscription.events),
        (put.Records ?? []).map((record) => record.SequenceNumber),
      );
      const data = subscription.events
        .flatMap((event) => event.Records ?? [])
        .map((record) => Buffer.from(record.Data ?? []).toString());
      assert.deepEqual(data, ['x', 'y', 'z']);
    } finally {
      polling.destroy();
      direct.destroy();
      client.destroy();
    }
  });
});

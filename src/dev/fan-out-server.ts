/**
 * An enhanced fan-out front for kinesis-local, for `temporal-kcl dev` and the tests: it serves SubscribeToShard as AWS
 * does, from the emulator's shard data, so fan-out runs through the unmodified AWS SDK (its default HTTP/2 handler) with
 * only the endpoint changed.
 *
 * Why not kinesis-local's own SubscribeToShard: the SDK closes an event stream's session gracefully (GOAWAY) once the
 * response headers arrive; kinesis-mock's HTTP/2 server (http4s ember) then cancels every open stream and sends an
 * unsolicited PING ACK, which Node treats as a protocol error ("Deserialization error" in the SDK). Its
 * SubscribeToShard also never sends ChildShards and always lasts 5 minutes.
 *
 * One plain port speaks both protocols (./emulator-front.ts): HTTP/2 with prior knowledge (what the SDK does for an
 * http:// endpoint) and HTTP/1.1. SubscribeToShard is answered here; every other call is forwarded to the emulator. So
 * one endpoint serves the HTTP/1.1 polling client and the HTTP/2 fan-out client.
 *
 * AWS semantics kept (API_SubscribeToShard): an `initial-response` event, then SubscribeToShardEvent frames; a
 * subscription ends after `subscriptionMs` (AWS: 5 minutes); a second subscription of a (consumer, shard) within
 * `takeoverMs` (AWS: 5 s) gets ResourceInUseException, a later one takes over and the first fails with an in-stream
 * ResourceInUseException; at shard end the last event has ChildShards and no ContinuationSequenceNumber.
 */
import type { ServerHttp2Stream } from 'node:http2';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  DescribeStreamConsumerCommand,
  GetRecordsCommand,
  GetShardIteratorCommand,
  ListShardsCommand,
  type Shard,
  type StartingPosition,
} from '@aws-sdk/client-kinesis';
import { createKinesisClient, EMULATOR_CREDENTIALS } from '../aws/clients';
import { eventFrame, exceptionFrame, wireRecord } from './event-stream-frames';
import { startEmulatorFront } from './emulator-front';

const SUBSCRIBE_TARGET = 'Kinesis_20131202.SubscribeToShard';

/** What the next subscription of a shard suffers (see {@link FanOutServer.inject}). */
export interface FanOutFault {
  /**
   * `LimitExceededException`: the call is refused (HTTP 400), as AWS throttles; `InternalFailureException`: an exception
   * frame ends the stream; `reset`: RST_STREAM INTERNAL_ERROR; `disconnect`: the TCP connection drops.
   */
  kind: 'LimitExceededException' | 'InternalFailureException' | 'reset' | 'disconnect';
  /** Events sent before the fault strikes (not for LimitExceededException). @default 0 */
  afterEvents?: number;
}

export interface FanOutServerOptions {
  /** kinesis-local's plain endpoint, e.g. `http://127.0.0.1:4567` (kinesalite has no stream consumers). */
  emulatorEndpoint: string;
  /**
   * Port on 127.0.0.1.
   * @default a free port
   */
  port?: number;
  /**
   * How long a subscription lasts before the server ends it normally (AWS: 5 minutes); tests set a few seconds to see
   * renewals.
   * @default 300000
   */
  subscriptionMs?: number;
  /**
   * A second subscription of the same consumer and shard within this time of the open one gets ResourceInUseException;
   * a later one takes over and the open one ends with an in-stream ResourceInUseException (AWS: 5 s).
   * @default 5000
   */
  takeoverMs?: number;
  /**
   * Pause between two GetRecords calls on the emulator while the shard has nothing new.
   * @default 100
   */
  pollMs?: number;
  /**
   * Longest time without an event: an empty event (with the continuation) is sent when nothing arrives for this long.
   * @default 1000
   */
  emptyEventMs?: number;
  /**
   * Most records in one event.
   * @default 10000
   */
  maxRecordsPerEvent?: number;
  /**
   * Do not keep the process alive for the server's sake (see `DevStackOptions.unref`).
   * @default false
   */
  unref?: boolean;
}

/** What the server has done since it started (tests assert on it). */
export interface FanOutStats {
  /** Subscriptions that started streaming. */
  subscriptions: number;
  /** SubscribeToShardEvent frames sent (the initial-response not counted). */
  events: number;
  /** Records pushed. */
  records: number;
  /** Subscriptions refused with ResourceInUseException (within `takeoverMs` of the open one). */
  rejectedInUse: number;
  /** Open subscriptions ended because a later one took over. */
  takenOver: number;
}

export interface FanOutServer {
  /** `http://127.0.0.1:<port>`, for both the polling (HTTP/1.1) and the fan-out (HTTP/2) client. */
  endpoint: string;
  stats: FanOutStats;
  /** `<consumerArn> <shardId>` of the open subscriptions. */
  activeSubscriptions(): string[];
  /** Queues a fault for the next subscription of `shardId`. */
  inject(shardId: string, fault: FanOutFault): void;
  /** Ends every subscription and connection and stops listening. */
  close(): Promise<void>;
}

/** An AWS error the server answers with (as HTTP 400/500 before the stream starts). */
class ServiceError extends Error {
  constructor(
    readonly type: string,
    message: string,
  ) {
    super(message);
    this.name = type;
  }
}

interface SubscribeInput {
  ConsumerARN: string;
  ShardId: string;
  StartingPosition: { Type: StartingPosition['Type']; SequenceNumber?: string; Timestamp?: number };
}

interface OpenSubscription {
  startedAt: number;
  kick(): void;
}

function streamArnOf(consumerArn: string): string {
  const at = consumerArn.indexOf('/consumer/');
  if (at < 0) throw new ServiceError('InvalidArgumentException', `not a consumer ARN: ${consumerArn}`);
  return consumerArn.slice(0, at);
}

export async function startFanOutServer(options: FanOutServerOptions): Promise<FanOutServer> {
  const subscriptionMs = options.subscriptionMs ?? 300_000;
  const takeoverMs = options.takeoverMs ?? 5_000;
  const pollMs = options.pollMs ?? 100;
  const emptyEventMs = options.emptyEventMs ?? 1_000;
  const maxRecordsPerEvent = options.maxRecordsPerEvent ?? 10_000;
  const kinesis = createKinesisClient({
    region: 'us-east-1',
    kinesisEndpoint: options.emulatorEndpoint,
    credentials: EMULATOR_CREDENTIALS,
  });
  const active = new Map<string, OpenSubscription>();
  const faults = new Map<string, FanOutFault[]>();
  const stats: FanOutStats = { subscriptions: 0, events: 0, records: 0, rejectedInUse: 0, takenOver: 0 };

  function answerError(stream: ServerHttp2Stream, error: unknown) {
    if (stream.destroyed || stream.headersSent) return;
    const type = error instanceof ServiceError ? error.type : 'InternalFailureException';
    const message = error instanceof Error ? error.message : String(error);
    stream.respond({
      ':status': type === 'InternalFailureException' ? 500 : 400,
      'content-type': 'application/x-amz-json-1.1',
      'x-amzn-errortype': type,
    });
    stream.end(JSON.stringify({ __type: type, message }));
  }

  /** The subscription's start as "after this sequence number" (the shard's starting number: before its first record). */
  async function startAfter(streamArn: string, shard: Shard, position: SubscribeInput['StartingPosition']) {
    const shardStart = shard.SequenceNumberRange?.StartingSequenceNumber ?? '0';
    if (position.Type === 'AFTER_SEQUENCE_NUMBER' && position.SequenceNumber) return position.SequenceNumber;
    if (position.Type === 'TRIM_HORIZON') return shardStart;
    // AT_SEQUENCE_NUMBER, AT_TIMESTAMP, LATEST: the record before the position. The emulator takes only exact sequence
    // numbers, so read the shard from its start (test shards are small).
    const since = position.Timestamp === undefined ? undefined : new Date(position.Timestamp * 1000);
    let previous = shardStart;
    let iterator = (
      await kinesis.send(
        new GetShardIteratorCommand({
          StreamARN: streamArn,
          ShardId: shard.ShardId,
          ShardIteratorType: 'TRIM_HORIZON',
        }),
      )
    ).ShardIterator;
    while (iterator) {
      const page = await kinesis.send(new GetRecordsCommand({ StreamARN: streamArn, ShardIterator: iterator }));
      const records = page.Records ?? [];
      for (const record of records) {
        if (position.Type === 'AT_SEQUENCE_NUMBER' && record.SequenceNumber === position.SequenceNumber)
          return previous;
        if (
          position.Type === 'AT_TIMESTAMP' &&
          since &&
          record.ApproximateArrivalTimestamp &&
          record.ApproximateArrivalTimestamp >= since
        )
          return previous;
        previous = record.SequenceNumber ?? previous;
      }
      iterator = records.length > 0 ? page.NextShardIterator : undefined;
    }
    if (position.Type === 'AT_SEQUENCE_NUMBER') {
      throw new ServiceError('InvalidArgumentException', `no record ${position.SequenceNumber} in ${shard.ShardId}`);
    }
    return previous;
  }

  async function subscribe(stream: ServerHttp2Stream, input: SubscribeInput): Promise<void> {
    const { ConsumerARN: consumerArn, ShardId: shardId, StartingPosition: position } = input;
    const streamArn = streamArnOf(consumerArn);
    const consumer = await kinesis
      .send(new DescribeStreamConsumerCommand({ ConsumerARN: consumerArn }))
      .catch((error: Error) => Promise.reject(new ServiceError(error.name, error.message)));
    if (consumer.ConsumerDescription?.ConsumerStatus !== 'ACTIVE') {
      throw new ServiceError('ResourceInUseException', `consumer ${consumerArn} is not ACTIVE`);
    }
    const shards = await kinesis.send(new ListShardsCommand({ StreamARN: streamArn }));
    const shard = shards.Shards?.find((s) => s.ShardId === shardId);
    if (!shard) throw new ServiceError('ResourceNotFoundException', `no shard ${shardId} in ${streamArn}`);
    const key = `${consumerArn} ${shardId}`;
    const previous = active.get(key);
    if (previous && Date.now() - previous.startedAt < takeoverMs) {
      stats.rejectedInUse++;
      throw new ServiceError(
        'ResourceInUseException',
        `Another active subscription exists for consumer ${consumerArn} on shard ${shardId}`,
      );
    }
    if (previous) {
      stats.takenOver++;
      previous.kick();
    }
    const fault = faults.get(shardId)?.shift();
    if (fault?.kind === 'LimitExceededException') {
      throw new ServiceError('LimitExceededException', 'Rate exceeded for consumer and shard');
    }

    let open = true;
    const me: OpenSubscription = {
      startedAt: Date.now(),
      kick() {
        open = false;
        active.delete(key);
        if (!stream.destroyed)
          stream.end(exceptionFrame('ResourceInUseException', `subscription to ${shardId} taken over`));
      },
    };
    active.set(key, me);
    stats.subscriptions++;
    const release = () => {
      if (active.get(key) === me) active.delete(key);
      open = false;
    };
    stream.on('close', release);
    const write = (frame: Uint8Array) =>
      new Promise<void>((resolve) => (stream.write(frame) ? resolve() : stream.once('drain', () => resolve())));
    try {
      let continuation = await startAfter(streamArn, shard, position);
      let iterator = (
        await kinesis.send(
          new GetShardIteratorCommand({
            StreamARN: streamArn,
            ShardId: shardId,
            ShardIteratorType: 'AFTER_SEQUENCE_NUMBER',
            StartingSequenceNumber: continuation,
          }),
        )
      ).ShardIterator;
      stream.respond({ ':status': 200, 'content-type': 'application/vnd.amazon.eventstream' });
      await write(eventFrame('initial-response', {}));
      const endAt = Date.now() + subscriptionMs;
      let lastEventAt = 0;
      let eventsSent = 0;
      while (open && !stream.destroyed && Date.now() < endAt) {
        if (fault && eventsSent >= (fault.afterEvents ?? 0)) {
          if (fault.kind === 'InternalFailureException') {
            stream.end(exceptionFrame('InternalFailureException', 'injected failure'));
          } else if (fault.kind === 'reset') {
            stream.destroy(new Error('injected reset')); // RST_STREAM INTERNAL_ERROR; close(code) would end the stream first
          } else if (fault.kind === 'disconnect') {
            stream.session?.socket.destroy();
          }
          return;
        }
        const page = await kinesis.send(
          new GetRecordsCommand({ StreamARN: streamArn, ShardIterator: iterator, Limit: maxRecordsPerEvent }),
        );
        const records = page.Records ?? [];
        continuation = records.at(-1)?.SequenceNumber ?? continuation;
        const shardEnd = !page.NextShardIterator;
        if (records.length > 0 || shardEnd || Date.now() - lastEventAt >= emptyEventMs) {
          if (!open || stream.destroyed) break;
          await write(
            eventFrame('SubscribeToShardEvent', {
              Records: records.map(wireRecord),
              MillisBehindLatest: page.MillisBehindLatest ?? 0,
              ...(shardEnd ? { ChildShards: page.ChildShards ?? [] } : { ContinuationSequenceNumber: continuation }),
            }),
          );
          stats.events++;
          stats.records += records.length;
          eventsSent++;
          lastEventAt = Date.now();
        }
        if (shardEnd) break;
        iterator = page.NextShardIterator;
        if (records.length === 0) await sleep(pollMs);
      }
      if (open && !stream.destroyed) stream.end();
    } catch (error) {
      if (!stream.headersSent) throw error;
      if (!stream.destroyed) stream.destroy(error instanceof Error ? error : new Error(String(error)));
    } finally {
      release();
    }
  }

  const front = await startEmulatorFront({
    emulatorEndpoint: options.emulatorEndpoint,
    ...(options.port === undefined ? {} : { port: options.port }),
    unref: options.unref ?? false,
    intercept: {
      target: SUBSCRIBE_TARGET,
      handle(stream, body) {
        let input: SubscribeInput;
        try {
          input = JSON.parse(body.toString('utf8')) as SubscribeInput;
        } catch {
          answerError(stream, new ServiceError('SerializationException', 'request body is not JSON'));
          return;
        }
        subscribe(stream, input).catch((error: unknown) => answerError(stream, error));
      },
    },
  });

  return {
    endpoint: front.endpoint,
    stats,
    activeSubscriptions: () => [...active.keys()],
    inject(shardId, fault) {
      faults.set(shardId, [...(faults.get(shardId) ?? []), fault]);
    },
    async close() {
      await front.close();
      kinesis.destroy();
    },
  };
}

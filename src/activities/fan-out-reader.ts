/**
 * Enhanced fan-out on the worker that holds a shard: one `SubscribeToShard` push stream per shard, kept open across the
 * reads and windows of the shard on this worker, renewed from its last `ContinuationSequenceNumber` when it ends (every
 * 5 minutes on AWS), with no gap and no duplicate. Events wait in a short queue (HTTP/2 flow control holds the rest back)
 * until a read takes them: one event is one batch, de-aggregated and filtered by the shard reader exactly as a polled
 * one. Nothing of it reaches Temporal history: the workflow sees the same batch summaries and windows as with polling.
 *
 * Where reading stands is a fan-out position, carried where a polling consumer carries its shard iterator: it never
 * expires, and any worker can subscribe from it (a failover, a handoff).
 */
import {
  type ChildShard as KinesisChildShard,
  type GetRecordsCommandOutput,
  type KinesisClient,
  type StartingPosition,
  SubscribeToShardCommand,
  type _Record,
} from '@aws-sdk/client-kinesis';
import { ApplicationFailure } from '@temporalio/activity';
import type { ResumePosition, ShardRef } from '../consumer-types';
import { FailureType } from '../failure-types';
import { awsErrorName as errorName, kinesisFailure } from './aws-failures';
import { shardMetrics } from './metrics';
import { pause } from './shard-reader';

/** What the shard reader turns into a batch: the fields of a GetRecords response an event also has. */
export interface PushedRead {
  /** `NextShardIterator` is the position after the event (absent at shard end). */
  response: Pick<GetRecordsCommandOutput, 'Records' | 'MillisBehindLatest' | 'NextShardIterator' | 'ChildShards'>;
  readAt: number;
  /** How long the read waited for the event. */
  durationMs: number;
}

const PREFIX = 'fan-out|';

/** Whether a shard "iterator" is a fan-out position (real Kinesis iterators are opaque base64 and never start so). */
export function isFanOutIterator(iterator: string): boolean {
  return iterator.startsWith(PREFIX);
}

/**
 * The fan-out position for a consumer at `position`. LATEST is taken as AT_TIMESTAMP `obtainedAt` (the subscription
 * starts later, at the first read: a record put in between must not be skipped).
 */
export function fanOutIterator(consumerArn: string, position: ResumePosition, obtainedAt: string): string {
  switch (position.type) {
    case 'TRIM_HORIZON':
      return `${PREFIX}${consumerArn}|TRIM_HORIZON`;
    case 'LATEST':
      return `${PREFIX}${consumerArn}|AT_TIMESTAMP|${obtainedAt}`;
    case 'AT_TIMESTAMP':
      return `${PREFIX}${consumerArn}|AT_TIMESTAMP|${position.timestamp}`;
    case 'AT_SEQUENCE_NUMBER':
    case 'AFTER_SEQUENCE_NUMBER':
      return `${PREFIX}${consumerArn}|${position.type}|${position.sequenceNumber}`;
  }
}

/** A malformed position cannot get better by retrying. */
function notAPosition(iterator: string): ApplicationFailure {
  return ApplicationFailure.create({
    type: FailureType.InvalidArgument,
    message: `not a fan-out position: ${iterator}`,
    nonRetryable: true,
  });
}

/** The consumer and starting position a fan-out position names. */
export function parseFanOutIterator(iterator: string): { consumerArn: string; startingPosition: StartingPosition } {
  const [, consumerArn, type, value] = iterator.split('|');
  if (!consumerArn || !type) throw notAPosition(iterator);
  switch (type) {
    case 'TRIM_HORIZON':
      return { consumerArn, startingPosition: { Type: 'TRIM_HORIZON' } };
    case 'AT_TIMESTAMP':
      return { consumerArn, startingPosition: { Type: 'AT_TIMESTAMP', Timestamp: new Date(value ?? '') } };
    case 'AT_SEQUENCE_NUMBER':
    case 'AFTER_SEQUENCE_NUMBER':
      return { consumerArn, startingPosition: { Type: type, SequenceNumber: value } };
    default:
      throw notAPosition(iterator);
  }
}

const after = (consumerArn: string, sequenceNumber: string) =>
  `${PREFIX}${consumerArn}|AFTER_SEQUENCE_NUMBER|${sequenceNumber}`;

/** Events read ahead of the reads, per shard: the push stream waits (HTTP/2 flow control) beyond this. */
const MAX_QUEUED_EVENTS = 4;
/** Kinesis allows one SubscribeToShard per second per consumer and shard. */
const MIN_SUBSCRIBE_INTERVAL_MS = 1_000;
/**
 * A subscription that fails this many times in a row without an event in between (a dropped connection, an in-stream
 * InternalFailure) is renewed no more: the failure reaches the read, whose retry policy takes over.
 */
const MAX_RENEWALS_WITHOUT_EVENT = 3;
/**
 * A subscription refused because another is open (an earlier owner's, closed within seconds; AWS lets a new one take
 * over 5 s after the old one's last call) is tried again this often, this many times, before the read fails.
 */
const IN_USE_RETRY_MS = 1_500;
const IN_USE_RETRIES = 5;
/** A subscription no read has used for this long is closed (its shard moved away, or its consumer ended). */
const IDLE_CLOSE_MS = 30_000;

interface QueuedEvent {
  /** Taken in parts of at most `maxRecords` (see {@link Subscription.take}). */
  records: _Record[];
  millisBehindLatest: number;
  /** The position after the event; undefined at shard end. */
  next: string | undefined;
  childShards?: KinesisChildShard[];
}

/**
 * Failures a renewal from the last continuation may cure: AWS's InternalFailure, and a stream or connection that broke
 * (the SDK reports a reset HTTP/2 stream as a plain Error).
 */
function renewable(error: unknown): boolean {
  if (errorName(error) === 'InternalFailureException') return true;
  // Not AWS's (no `$metadata`), whatever its `code` (ERR_HTTP2_STREAM_ERROR, ECONNRESET, ...).
  return error instanceof Error && error.name === 'Error' && !('$metadata' in error);
}

/** One shard's push stream on this worker. */
class Subscription {
  /** The position the next event follows: what a read must ask for to get it. */
  position: string;
  readonly queue: QueuedEvent[] = [];
  failure: unknown;
  closed = false;
  lastUsed = Date.now();
  /** Reads of this subscription so far: the latest one owns the queue. */
  reads = 0;
  /** SubscribeToShard calls made, and how many of them a read has counted in the metrics. */
  calls = 0;
  counted = 0;
  private readonly controller = new AbortController();
  /** Reads waiting for an event (a cancelled read may still wait while the next one starts). */
  private readonly waiters = new Set<() => void>();
  private space: (() => void) | undefined;

  constructor(
    private readonly client: KinesisClient,
    readonly ref: ShardRef,
    start: string,
    private readonly lastSubscribe: Map<string, number>,
  ) {
    this.position = start;
    void this.pump(start);
  }

  /** Resolves when an event, a failure or the end arrives, or after `ms`, or when `signal` aborts. */
  waitForEvent(ms: number, signal: AbortSignal | undefined): Promise<void> {
    if (this.queue.length > 0 || this.failure !== undefined || this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
      this.waiters.add(done);
    });
  }

  /**
   * The next event, or its first `maxRecords` records (the rest stay first in line, after a position of their own):
   * batches are no larger than `maxRecords`, as with polling. An event carries up to the shard's 2 MB/s of records.
   */
  take(consumerArn: string, maxRecords: number): QueuedEvent | undefined {
    const event = this.queue[0];
    if (!event) return undefined;
    const head = event.records.slice(0, maxRecords);
    const last = head.at(-1)?.SequenceNumber;
    if (event.records.length > maxRecords && last) {
      event.records = event.records.slice(maxRecords);
      const part: QueuedEvent = { ...event, records: head, next: after(consumerArn, last) };
      delete part.childShards;
      this.position = part.next!;
      return part;
    }
    this.queue.shift();
    this.position = event.next ?? this.position;
    this.space?.();
    return event;
  }

  /** A read waits for an event: the subscription is in use, however long ago that read began. */
  get waiting(): boolean {
    return this.waiters.size > 0;
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.controller.abort();
    this.wake();
    this.space?.();
  }

  private push(event: QueuedEvent): void {
    this.queue.push(event);
    this.wake();
  }

  private async pump(start: string): Promise<void> {
    const { consumerArn } = parseFanOutIterator(start);
    let from = start;
    let failuresInRow = 0;
    let inUseInRow = 0;
    const key = `${consumerArn}|${this.ref.shardId}`;
    while (!this.closed) {
      const wait = (this.lastSubscribe.get(key) ?? 0) + MIN_SUBSCRIBE_INTERVAL_MS - Date.now();
      if (wait > 0) await pause(wait, this.controller.signal);
      if (this.closed) return;
      this.lastSubscribe.set(key, Date.now());
      this.calls++;
      let subscribed = false;
      try {
        const { startingPosition } = parseFanOutIterator(from);
        const output = await this.client.send(
          new SubscribeToShardCommand({
            ConsumerARN: consumerArn,
            ShardId: this.ref.shardId,
            StartingPosition: startingPosition,
          }),
          { abortSignal: this.controller.signal },
        );
        subscribed = true;
        inUseInRow = 0;
        for await (const item of output.EventStream ?? []) {
          const event = item.SubscribeToShardEvent;
          if (this.closed) return;
          if (!event) continue;
          failuresInRow = 0;
          const continuation = event.ContinuationSequenceNumber ?? undefined;
          const next = continuation ? after(consumerArn, continuation) : undefined;
          this.push({
            records: event.Records ?? [],
            millisBehindLatest: event.MillisBehindLatest ?? 0,
            next,
            ...(event.ChildShards && event.ChildShards.length > 0 ? { childShards: event.ChildShards } : {}),
          });
          // No continuation: the shard has ended (its children are in the event). Nothing follows.
          if (next === undefined) return;
          from = next;
          while (this.queue.length >= MAX_QUEUED_EVENTS && !this.closed) {
            await new Promise<void>((resolve) => (this.space = resolve));
            this.space = undefined;
          }
        }
        // The subscription's lifetime is over (5 minutes on AWS): renewed from where it got to.
      } catch (error) {
        if (this.closed) return;
        if (!subscribed && errorName(error) === 'ResourceInUseException' && ++inUseInRow <= IN_USE_RETRIES) {
          await pause(IN_USE_RETRY_MS, this.controller.signal);
          continue;
        }
        if (renewable(error) && ++failuresInRow <= MAX_RENEWALS_WITHOUT_EVENT) continue;
        // Throttling, a consumer or stream that is gone, a subscription taken over by another reader, or faults that
        // renewing did not cure: the read fails with it, and its retry policy (or the workflow) decides.
        this.failure = error;
        this.wake();
        return;
      }
    }
  }
}

/** This worker's push streams, by consumer and shard. */
export function createFanOutReader({ client }: { client: () => KinesisClient }) {
  const subscriptions = new Map<string, Subscription>();
  /** When this worker last subscribed, per consumer and shard (Kinesis allows one call a second). */
  const lastSubscribe = new Map<string, number>();
  const closeIdle = () => {
    const cutoff = Date.now() - IDLE_CLOSE_MS;
    for (const [key, subscription] of subscriptions) {
      if ((subscription.lastUsed < cutoff && !subscription.waiting) || subscription.closed) {
        subscription.close();
        subscriptions.delete(key);
      }
    }
    for (const [key, at] of lastSubscribe) if (at < cutoff) lastSubscribe.delete(key);
  };
  const sweeper = setInterval(closeIdle, IDLE_CLOSE_MS / 3);
  sweeper.unref();

  return {
    /**
     * The next event after `position` (one batch, or its first `maxRecords` records), waiting up to `waitMs` for one with records (events without records
     * only move the position on; at the end of the wait an empty batch at the newest position is returned). When
     * `signal` aborts, the shard is leaving this worker (a stop, a move, a drain): its push stream is closed.
     */
    async read(
      ref: ShardRef,
      from: string,
      options: { waitMs: number; maxRecords: number; signal?: AbortSignal | undefined },
    ): Promise<PushedRead> {
      const { waitMs, maxRecords, signal } = options;
      const { consumerArn } = parseFanOutIterator(from);
      /** Where this read has got to. */
      let position = from;
      const key = `${consumerArn}|${ref.shardId}`;
      let subscription = subscriptions.get(key);
      if (!subscription || subscription.closed || subscription.position !== position) {
        // A first read, or a read from elsewhere (a batch read again, a retry from the checkpoint): subscribe there.
        subscription?.close();
        subscription = new Subscription(client(), ref, position, lastSubscribe);
        subscriptions.set(key, subscription);
      }
      // The newest read of the shard owns its queue: an older one still waiting (a cancelled or timed-out attempt)
      // takes nothing more, or the two would split the events between them.
      const ticket = ++subscription.reads;
      const owns = () => subscription.reads === ticket;
      const readAt = Date.now();
      const deadline = readAt + waitMs;
      let millisBehindLatest = 0;
      const result = (response: PushedRead['response']): PushedRead => {
        subscription.lastUsed = Date.now();
        if (subscription.calls > subscription.counted) {
          shardMetrics(ref).fanOutSubscriptions(subscription.calls - subscription.counted);
          subscription.counted = subscription.calls;
        }
        return { response, readAt, durationMs: Date.now() - readAt };
      };
      for (;;) {
        const event = owns() ? subscription.take(consumerArn, maxRecords) : undefined;
        if (event) {
          millisBehindLatest = event.millisBehindLatest;
          if (event.records.length > 0 || event.next === undefined) {
            return result({
              Records: event.records,
              MillisBehindLatest: event.millisBehindLatest,
              ...(event.next !== undefined ? { NextShardIterator: event.next } : {}),
              ...(event.childShards ? { ChildShards: event.childShards } : {}),
            });
          }
          position = subscription.position;
          continue; // an event without records: progress only
        }
        if (owns() && subscription.failure !== undefined) {
          const failure = subscription.failure;
          subscription.close();
          subscriptions.delete(key);
          const hint =
            errorName(failure) === 'ResourceInUseException'
              ? // An earlier owner of the shard (closed within seconds, or taken over 5 s after its last call), or
                // another application using this consumer name. The read's retry policy tries again.
                ': another subscription to the shard is open; is another application using this consumer name?'
              : '';
          throw kinesisFailure(
            failure,
            `SubscribeToShard on ${ref.shardId} of stream ${ref.streamName} (consumer ${consumerArn}${hint})`,
          );
        }
        const now = Date.now();
        if (signal?.aborted && owns()) {
          subscription.close();
          subscriptions.delete(key);
        }
        if (signal?.aborted || now >= deadline || subscription.closed || !owns()) {
          return result({ Records: [], MillisBehindLatest: millisBehindLatest, NextShardIterator: position });
        }
        await subscription.waitForEvent(deadline - now, signal);
      }
    },

    /** Closes every push stream (the worker is stopping). */
    close(): void {
      clearInterval(sweeper);
      for (const subscription of subscriptions.values()) subscription.close();
      subscriptions.clear();
    },
  };
}

export type FanOutReader = ReturnType<typeof createFanOutReader>;

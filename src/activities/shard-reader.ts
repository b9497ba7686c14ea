/**
 * Reads a shard on the worker that holds it: GetRecords paced per shard, a read ahead while the shard is behind, the
 * wait for new records at a quiet shard's tip (polling inside the read, so a quiet shard costs no workflow timer), and
 * de-aggregation and filtering of what a read returns. The read activity and the window both read through it.
 */
import { GetRecordsCommand, type GetRecordsCommandOutput, type KinesisClient } from '@aws-sdk/client-kinesis';
import { ApplicationFailure } from '@temporalio/activity';
import type { BatchSummary, ChildShard, DeaggregationFailureReport, HashKeyRange, ShardRef } from '../consumer-types';
import { deaggregateRecords } from '../kinesis/deaggregate';
import { hashKeyRangeFilter } from '../kinesis/hash-key';
import { comparePositions, type ExtendedSequenceNumber, positionOf } from '../positions';
import type { KinesisRecord } from '../record-processor';
import { FailureType } from '../failure-types';
import { kinesisFailure } from './aws-failures';
import { type FanOutReader, isFanOutIterator, type PushedRead } from './fan-out-reader';
import { shardMetrics } from './metrics';

/** How to read: the options of a read that do not change from one read to the next. */
export interface ReadSettings {
  maxRecords: number;
  /** The shard's hash-key range: user records of aggregates outside it are dropped (they belong to another shard). */
  hashKeyRange?: HashKeyRange;
  /** Least time since this worker's previous GetRecords on the shard (Kinesis allows 5 reads/s per shard). @default 0 */
  minIntervalMs?: number;
  /**
   * After a read that shows the shard behind (a full batch, or millisBehindLatest above 0), start the read from its
   * next iterator at once, in this worker: the next read with that iterator then finds it done or under way.
   * @default false
   */
  readAhead?: boolean;
  /**
   * When a read finds nothing and the shard is at its tip (less than `idlePollMs` behind), poll Kinesis every
   * `idlePollMs` for up to this long before returning empty. @default 0 (return at once)
   */
  idleWaitMs?: number;
  /** How often the idle wait polls. @default 1000 */
  idlePollMs?: number;
}

/** A read, de-aggregated and filtered: the records, and the summary the workflow gets (without a cache handle yet). */
export interface ReadBatch {
  records: KinesisRecord[];
  summary: Omit<BatchSummary, 'handle'>;
}

/** A GetRecords response and when its call started (epoch ms). */
interface RawRead {
  response: GetRecordsCommandOutput;
  readAt: number;
  durationMs: number;
}

/** A read started ahead of the workflow's request, for the shard's next iterator. */
interface ReadAhead {
  iterator: string;
  startedAt: number;
  /** Never rejects: a failure is kept, to be the failure of the request that takes it. */
  read: Promise<RawRead | { error: unknown }>;
}

/** A read ahead nobody asked for within this time is dropped (the workflow moved on, or the shard moved away). */
const READ_AHEAD_TTL_MS = 60_000;

/** How many de-aggregation failures a batch summary lists by sequence number (all are counted). */
const REPORTED_FAILURES = 10;

/** How long past its wait a quiet read may take before an in-flight GetRecords is abandoned. */
export const QUIET_READ_GRACE_MS = 500;

/**
 * What a quiet read that ran out of time returns: nothing read, at the tip, to be read again from the same iterator
 * (nothing is skipped: a GetRecords cut short may have found records, and the next read finds them again).
 */
function quietBatch(iterator: string, readAt: number): ReadBatch {
  return {
    records: [],
    summary: {
      recordCount: 0,
      kinesisRecordCount: 0,
      bytes: 0,
      millisBehindLatest: 0,
      nextIterator: iterator,
      deaggregationFailures: [],
      deaggregationFailureCount: 0,
      droppedOutOfRange: 0,
      droppedCheckpointed: 0,
      readAt,
    },
  };
}

/** True when a read returned nothing and the shard is at (or within `pollMs` of) its tip: waiting is the thing to do. */
export function atQuietTip(
  summary: Pick<BatchSummary, 'kinesisRecordCount' | 'millisBehindLatest' | 'nextIterator'>,
  pollMs: number,
): boolean {
  return summary.kinesisRecordCount === 0 && summary.millisBehindLatest < pollMs && summary.nextIterator !== undefined;
}

/** Resolves after `ms`, or at once when the signal aborts. */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

function shardKey(ref: ShardRef): string {
  return `${ref.applicationName}/${ref.streamName}/${ref.shardId}`;
}

/**
 * This worker's reader: pacing and reads ahead are kept per shard. A fan-out position (`retrieval: 'fan-out'`) reads
 * the shard's push stream instead (`fanOut`); what comes back is de-aggregated and filtered the same way.
 */
export function createShardReader({ kinesis, fanOut }: { kinesis: KinesisClient; fanOut?: FanOutReader }) {
  /** When this worker last started a GetRecords call, per shard: reads are paced, not just backed off after a throttle. */
  const lastRead = new Map<string, number>();
  const pace = async (key: string, minIntervalMs: number | undefined) => {
    const wait = (lastRead.get(key) ?? 0) + (minIntervalMs ?? 0) - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    lastRead.set(key, Date.now());
  };
  /** At most one read ahead per shard. */
  const readsAhead = new Map<string, ReadAhead>();
  const dropStaleReadsAhead = () => {
    const cutoff = Date.now() - READ_AHEAD_TTL_MS;
    for (const [key, ahead] of readsAhead) if (ahead.startedAt < cutoff) readsAhead.delete(key);
  };
  const fetchBatch = async (
    key: string,
    settings: ReadSettings,
    iterator: string,
    abortSignal?: AbortSignal,
  ): Promise<RawRead> => {
    await pace(key, settings.minIntervalMs);
    const readAt = Date.now();
    const response = await kinesis.send(
      new GetRecordsCommand({ ShardIterator: iterator, Limit: settings.maxRecords }),
      abortSignal ? { abortSignal } : {},
    );
    return { response, readAt, durationMs: Date.now() - readAt };
  };
  /**
   * The read for `iterator`: the one started ahead if it is that iterator's and brought records (an empty one may be
   * stale by now: the read is made again). A read ahead that failed is this request's failure.
   */
  const fetch = async (
    key: string,
    settings: ReadSettings,
    iterator: string,
    abortSignal?: AbortSignal,
  ): Promise<RawRead> => {
    dropStaleReadsAhead(); // also those of shards that moved to other workers
    const ahead = readsAhead.get(key);
    if (ahead) readsAhead.delete(key);
    if (ahead?.iterator === iterator) {
      const done = await ahead.read;
      if ('error' in done) throw done.error;
      if ((done.response.Records?.length ?? 0) > 0) return done;
    }
    return fetchBatch(key, settings, iterator, abortSignal);
  };
  const startReadAhead = (key: string, settings: ReadSettings, iterator: string) => {
    readsAhead.set(key, {
      iterator,
      startedAt: Date.now(),
      read: fetchBatch(key, settings, iterator).catch((error: unknown) => ({ error })),
    });
  };

  /** De-aggregates and filters one response (or pushed event). */
  const toBatch = async (
    ref: ShardRef,
    fetched: RawRead | PushedRead,
    settings: ReadSettings,
    skipUntil: ExtendedSequenceNumber | undefined,
  ): Promise<ReadBatch> => {
    const { response, readAt, durationMs } = fetched;
    const raw = response.Records ?? [];
    const { records: userRecords, failures } = await deaggregateRecords(raw);
    const reported: DeaggregationFailureReport[] = failures.map((failure) => ({
      sequenceNumber: failure.sequenceNumber,
      error: failure.error,
    }));
    const records: KinesisRecord[] = [];
    let bytes = 0;
    let droppedOutOfRange = 0;
    let droppedCheckpointed = 0;
    let inRange: ReturnType<typeof hashKeyRangeFilter> | undefined;
    for (const record of userRecords) {
      if (skipUntil && comparePositions(record, skipUntil) <= 0) {
        droppedCheckpointed++;
        continue;
      }
      // As Java KCL: after a reshard, an aggregate may carry user records that now hash to another shard.
      if (record.subSequenceNumber !== undefined && settings.hashKeyRange) {
        let inside: boolean;
        try {
          inside = (inRange ??= hashKeyRangeFilter(settings.hashKeyRange))(record);
        } catch (error) {
          // An invalid explicit hash key: a corrupt user record. Skipped, counted and reported; the shard goes on.
          reported.push({
            sequenceNumber: `${record.sequenceNumber}/${record.subSequenceNumber}`,
            error: `user record with an invalid explicit hash key skipped: ${(error as Error).message}`,
          });
          continue;
        }
        if (!inside) {
          droppedOutOfRange++;
          continue;
        }
      }
      records.push(record);
      bytes += record.data.byteLength;
    }
    const millisBehindLatest = response.MillisBehindLatest ?? 0;
    const last = records.at(-1);
    const childShards: ChildShard[] | undefined = response.ChildShards?.map((child) => ({
      shardId: child.ShardId ?? '',
      parentShardIds: child.ParentShards ?? [],
      ...(child.HashKeyRange?.StartingHashKey && child.HashKeyRange.EndingHashKey
        ? {
            hashKeyRange: {
              startingHashKey: child.HashKeyRange.StartingHashKey,
              endingHashKey: child.HashKeyRange.EndingHashKey,
            },
          }
        : {}),
    }));
    const metrics = shardMetrics(ref);
    metrics.batch();
    metrics.getRecordsTime(durationMs);
    metrics.millisBehindLatest(millisBehindLatest);
    if (reported.length > 0) metrics.deaggregationFailures(reported.length);
    if (droppedOutOfRange > 0) metrics.droppedOutOfRange(droppedOutOfRange);
    return {
      records,
      summary: {
        recordCount: records.length,
        kinesisRecordCount: raw.length,
        bytes,
        ...(raw.length > 0 ? { lastSequenceNumber: raw[raw.length - 1]?.SequenceNumber } : {}),
        ...(last ? { lastDelivered: positionOf(last) } : {}),
        millisBehindLatest,
        ...(response.NextShardIterator ? { nextIterator: response.NextShardIterator } : {}),
        ...(childShards && childShards.length > 0 ? { childShards } : {}),
        deaggregationFailures: reported.slice(0, REPORTED_FAILURES),
        deaggregationFailureCount: reported.length,
        droppedOutOfRange,
        droppedCheckpointed,
        readAt,
      },
    };
  };

  /**
   * The next event of the shard's push stream: it waits for records up to the quiet read's wait, or `idlePollMs` (a
   * window's read), since there is nothing to poll.
   */
  const readPushed = async (
    ref: ShardRef,
    position: string,
    settings: ReadSettings,
    skipUntil: ExtendedSequenceNumber | undefined,
    signal: AbortSignal | undefined,
  ): Promise<ReadBatch> => {
    if (!fanOut) {
      throw ApplicationFailure.create({
        type: FailureType.InvalidConfig,
        message:
          "this worker cannot read with enhanced fan-out: give KclWorker an AwsConfig (or aws.kinesisFanOut, a KinesisClient with the AWS SDK's default HTTP/2 handler) for retrieval 'fan-out'",
        nonRetryable: true,
      });
    }
    const waitMs = Math.max(settings.idleWaitMs ?? 0, settings.idlePollMs ?? 1_000);
    // Its failures are typed activity failures already.
    const pushed = await fanOut.read(ref, position, { waitMs, maxRecords: settings.maxRecords, signal });
    return toBatch(ref, pushed, settings, skipUntil);
  };

  return {
    /**
     * One read from `iterator`, de-aggregated and filtered. At a quiet tip it waits (polling every `idlePollMs`) for up
     * to `idleWaitMs`, or until `signal` aborts. AWS errors become typed failures (an expired iterator is
     * ExpiredIterator, non-retryable; throttling is Throttled, retryable).
     */
    async read(
      ref: ShardRef,
      iterator: string,
      settings: ReadSettings,
      skipUntil: ExtendedSequenceNumber | undefined,
      signal?: AbortSignal,
    ): Promise<ReadBatch> {
      if (isFanOutIterator(iterator)) return readPushed(ref, iterator, settings, skipUntil, signal);
      const key = shardKey(ref);
      const pollMs = settings.idlePollMs ?? 1_000;
      const startedAt = Date.now();
      const deadline = startedAt + (settings.idleWaitMs ?? 0);
      // A quiet read returns by its deadline whatever Kinesis does: the workflow's start-to-close timeout for it is
      // only a little longer, and outliving it would read as a lost worker.
      const overdue = settings.idleWaitMs ? AbortSignal.timeout(settings.idleWaitMs + QUIET_READ_GRACE_MS) : undefined;
      for (let current = iterator; ;) {
        let fetched: RawRead;
        try {
          fetched = await fetch(key, settings, current, overdue);
        } catch (error) {
          if (overdue?.aborted) return quietBatch(current, startedAt);
          throw kinesisFailure(error, `GetRecords on ${ref.shardId} of stream ${ref.streamName}`);
        }
        const { response } = fetched;
        const behind = (response.Records?.length ?? 0) >= settings.maxRecords || (response.MillisBehindLatest ?? 0) > 0;
        if (settings.readAhead && response.NextShardIterator && behind) {
          startReadAhead(key, settings, response.NextShardIterator);
        }
        const quiet =
          (response.Records?.length ?? 0) === 0 &&
          (response.MillisBehindLatest ?? 0) < pollMs &&
          response.NextShardIterator !== undefined;
        if (!quiet || Date.now() + pollMs > deadline || signal?.aborted) {
          return toBatch(ref, fetched, settings, skipUntil);
        }
        await pause(pollMs, signal);
        if (signal?.aborted) return toBatch(ref, fetched, settings, skipUntil);
        current = response.NextShardIterator!;
      }
    },
  };
}

export type ShardReader = ReturnType<typeof createShardReader>;

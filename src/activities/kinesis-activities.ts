import {
  GetRecordsCommand,
  type GetRecordsCommandOutput,
  GetShardIteratorCommand,
  type GetShardIteratorCommandInput,
  type KinesisClient,
  ListShardsCommand,
  type ListShardsCommandOutput,
} from '@aws-sdk/client-kinesis';
import { ApplicationFailure } from '@temporalio/activity';
import type {
  BatchSummary,
  ChildShard,
  HashKeyRange,
  ResumePosition,
  ShardDescription,
  ShardRef,
} from '../consumer-types';
import { FailureType } from '../failure-types';
import { deaggregateRecords } from '../kinesis/deaggregate';
import { hashKeyRangeFilter } from '../kinesis/hash-key';
import { comparePositions, type ExtendedSequenceNumber, positionOf } from '../positions';
import type { KinesisRecord } from '../record-processor';
import { kinesisFailure } from './aws-failures';
import type { BatchCache } from './batch-cache';
import { withHeartbeats } from './heartbeat';
import { countRetry, shardMetrics } from './metrics';
import type { ProcessorHost } from './processor-host';

export interface KinesisActivityDeps {
  kinesis: KinesisClient;
  cache: BatchCache;
  host: ProcessorHost;
}

export interface GetRecordsInput {
  ref: ShardRef;
  iterator: string;
  maxRecords: number;
  /** The shard's hash-key range: user records of aggregates outside it are dropped (they belong to another shard). */
  hashKeyRange?: HashKeyRange;
  /** Drop user records at or before this position (resuming after a sub-sequence checkpoint). */
  skipUntil?: ExtendedSequenceNumber;
  /** Least time since this worker's previous GetRecords on the shard (Kinesis allows 5 reads/s per shard). @default 0 */
  minIntervalMs?: number;
  /**
   * After a read that shows the shard behind (a full batch, or millisBehindLatest above 0), start the read from its
   * next iterator at once, in this worker: the workflow's next getRecords with that iterator then finds it done or under
   * way, instead of waiting for a workflow task to schedule it. Only the raw response is kept; what this input filters
   * is applied when the workflow asks for it.
   * @default false
   */
  readAhead?: boolean;
}

/** A GetRecords response and when its call started (epoch ms). */
interface RawRead {
  response: GetRecordsCommandOutput;
  readAt: number;
  /** How long the call took. */
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

function iteratorRequest(ref: ShardRef, position: ResumePosition): GetShardIteratorCommandInput {
  const base = { StreamName: ref.streamName, ShardId: ref.shardId };
  switch (position.type) {
    case 'TRIM_HORIZON':
    case 'LATEST':
      return { ...base, ShardIteratorType: position.type };
    case 'AT_TIMESTAMP':
      return { ...base, ShardIteratorType: 'AT_TIMESTAMP', Timestamp: new Date(position.timestamp) };
    case 'AT_SEQUENCE_NUMBER':
    case 'AFTER_SEQUENCE_NUMBER':
      return { ...base, ShardIteratorType: position.type, StartingSequenceNumber: position.sequenceNumber };
  }
}

function toShardDescription(shard: NonNullable<ListShardsCommandOutput['Shards']>[number]): ShardDescription {
  return {
    shardId: shard.ShardId ?? '',
    parentShardIds: [shard.ParentShardId, shard.AdjacentParentShardId].filter((id): id is string => Boolean(id)),
    hashKeyRange: {
      startingHashKey: shard.HashKeyRange?.StartingHashKey ?? '0',
      endingHashKey: shard.HashKeyRange?.EndingHashKey ?? '0',
    },
    ...(shard.SequenceNumberRange?.EndingSequenceNumber
      ? { endingSequenceNumber: shard.SequenceNumberRange.EndingSequenceNumber }
      : {}),
  };
}

/**
 * Every shard of a stream still within its retention period (paginated ListShards), or only those with ids after
 * `afterShardId` (shard ids grow: the shards a reshard creates come after every existing one).
 */
export async function listAllShards(
  kinesis: KinesisClient,
  streamName: string,
  afterShardId?: string,
): Promise<ShardDescription[]> {
  const shards: ShardDescription[] = [];
  let nextToken: string | undefined;
  do {
    const page = await kinesis.send(
      new ListShardsCommand(
        nextToken
          ? { NextToken: nextToken, MaxResults: 1000 }
          : {
              StreamName: streamName,
              MaxResults: 1000,
              ...(afterShardId ? { ExclusiveStartShardId: afterShardId } : {}),
            },
      ),
    );
    for (const shard of page.Shards ?? []) shards.push(toShardDescription(shard));
    nextToken = page.NextToken;
  } while (nextToken);
  return shards;
}

/** Activities that read Kinesis. `getRecords` runs on the worker the shard is pinned to and keeps the batch there. */
export function createKinesisActivities({ kinesis, cache, host }: KinesisActivityDeps) {
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
  const fetchBatch = async (key: string, input: GetRecordsInput, iterator: string): Promise<RawRead> => {
    await pace(key, input.minIntervalMs);
    const readAt = Date.now();
    const response = await kinesis.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: input.maxRecords }));
    return { response, readAt, durationMs: Date.now() - readAt };
  };
  /**
   * The read for `input.iterator`: the one started ahead if it is that iterator's and brought records (an empty one may
   * be stale by now: the read is made again). A read ahead that failed is this request's failure (a throttle is then
   * retried by the activity's retry policy, with its backoff, and an expired iterator is reported once).
   */
  const read = async (key: string, input: GetRecordsInput): Promise<RawRead> => {
    dropStaleReadsAhead(); // also those of shards that moved to other workers
    const ahead = readsAhead.get(key);
    if (ahead) readsAhead.delete(key);
    if (ahead?.iterator === input.iterator) {
      const done = await ahead.read;
      if ('error' in done) throw done.error;
      if ((done.response.Records?.length ?? 0) > 0) return done;
    }
    return fetchBatch(key, input, input.iterator);
  };
  const startReadAhead = (key: string, input: GetRecordsInput, iterator: string) => {
    const ahead: ReadAhead = {
      iterator,
      startedAt: Date.now(),
      read: fetchBatch(key, input, iterator).catch((error: unknown) => ({ error })),
    };
    readsAhead.set(key, ahead);
  };
  return {
    /** The shard's parents and hash-key range, from ListShards. */
    async describeShard(input: { streamName: string; shardId: string }): Promise<ShardDescription> {
      let shards: ShardDescription[];
      try {
        shards = await listAllShards(kinesis, input.streamName);
      } catch (error) {
        throw kinesisFailure(error, `ListShards of stream ${input.streamName}`);
      }
      const shard = shards.find((candidate) => candidate.shardId === input.shardId);
      if (!shard) {
        throw ApplicationFailure.create({
          type: FailureType.ShardNotFound,
          message: `shard ${input.shardId} is not in stream ${input.streamName} (it has ${shards.length} shards within retention)`,
          nonRetryable: true,
        });
      }
      return shard;
    },

    /** A shard iterator for a position; `obtainedAt` lets the workflow resume a LATEST start without a gap. */
    async getShardIterator(input: {
      ref: ShardRef;
      position: ResumePosition;
    }): Promise<{ iterator: string; obtainedAt: string }> {
      countRetry(input.ref);
      const obtainedAt = new Date().toISOString();
      try {
        const response = await kinesis.send(new GetShardIteratorCommand(iteratorRequest(input.ref, input.position)));
        if (!response.ShardIterator) throw new Error('GetShardIterator returned no iterator');
        return { iterator: response.ShardIterator, obtainedAt };
      } catch (error) {
        throw kinesisFailure(
          error,
          `GetShardIterator ${input.position.type} on ${input.ref.shardId} of stream ${input.ref.streamName}`,
        );
      }
    },

    /**
     * One GetRecords call, de-aggregated and filtered; the records stay in this worker's memory and the workflow gets a
     * handle and metadata. Throttling is retried by the activity's retry policy; an expired iterator is reported as
     * non-retryable ExpiredIterator so the workflow gets a new iterator from the last record it processed.
     */
    async getRecords(input: GetRecordsInput): Promise<BatchSummary> {
      countRetry(input.ref);
      if (host.isDraining) {
        throw ApplicationFailure.create({
          type: FailureType.WorkerDraining,
          category: 'BENIGN',
          message: `this worker is shutting down; shard ${input.ref.shardId} moves to another worker`,
          nonRetryable: true,
        });
      }
      return withHeartbeats(async () => {
        const metrics = shardMetrics(input.ref);
        const key = `${input.ref.applicationName}/${input.ref.streamName}/${input.ref.shardId}`;
        let fetched: RawRead;
        try {
          fetched = await read(key, input);
        } catch (error) {
          throw kinesisFailure(error, `GetRecords on ${input.ref.shardId} of stream ${input.ref.streamName}`);
        }
        const { response, readAt, durationMs } = fetched;
        // Read ahead only while catching up (a full batch, or behind the tip): at the tip the next read is likely empty.
        const behind = (response.Records?.length ?? 0) >= input.maxRecords || (response.MillisBehindLatest ?? 0) > 0;
        if (input.readAhead && response.NextShardIterator && behind && !host.isDraining) {
          startReadAhead(key, input, response.NextShardIterator);
        }
        const raw = response.Records ?? [];
        const { records: userRecords, failures } = await deaggregateRecords(raw);
        const records: KinesisRecord[] = [];
        let bytes = 0;
        let droppedOutOfRange = 0;
        let droppedCheckpointed = 0;
        let inRange: ReturnType<typeof hashKeyRangeFilter> | undefined;
        for (const record of userRecords) {
          if (input.skipUntil && comparePositions(record, input.skipUntil) <= 0) {
            droppedCheckpointed++;
            continue;
          }
          // As Java KCL: after a reshard, an aggregate may carry user records that now hash to another shard.
          if (
            record.subSequenceNumber !== undefined &&
            input.hashKeyRange &&
            !(inRange ??= hashKeyRangeFilter(input.hashKeyRange))(record)
          ) {
            droppedOutOfRange++;
            continue;
          }
          records.push(record);
          bytes += record.data.byteLength;
        }
        const millisBehindLatest = response.MillisBehindLatest ?? 0;
        const handle = cache.put({ records, bytes, readAt, millisBehindLatest });
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

        metrics.batch();
        metrics.getRecordsTime(durationMs);
        metrics.millisBehindLatest(millisBehindLatest);
        if (failures.length > 0) metrics.deaggregationFailures(failures.length);
        if (droppedOutOfRange > 0) metrics.droppedOutOfRange(droppedOutOfRange);
        return {
          handle,
          recordCount: records.length,
          kinesisRecordCount: raw.length,
          bytes,
          ...(raw.length > 0 ? { lastSequenceNumber: raw[raw.length - 1]?.SequenceNumber } : {}),
          ...(last ? { lastDelivered: positionOf(last) } : {}),
          millisBehindLatest,
          ...(response.NextShardIterator ? { nextIterator: response.NextShardIterator } : {}),
          ...(childShards && childShards.length > 0 ? { childShards } : {}),
          deaggregationFailures: failures.slice(0, REPORTED_FAILURES).map((failure) => ({
            sequenceNumber: failure.sequenceNumber,
            error: failure.error,
          })),
          deaggregationFailureCount: failures.length,
          droppedOutOfRange,
          droppedCheckpointed,
          readAt,
        };
      });
    },
  };
}

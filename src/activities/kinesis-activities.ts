import {
  GetShardIteratorCommand,
  type GetShardIteratorCommandInput,
  type KinesisClient,
  ListShardsCommand,
  type ListShardsCommandOutput,
} from '@aws-sdk/client-kinesis';
import { ApplicationFailure } from '@temporalio/activity';
import type { BatchSummary, FanOutConsumer, ResumePosition, ShardDescription, ShardRef } from '../consumer-types';
import { FailureType } from '../failure-types';
import type { ExtendedSequenceNumber } from '../positions';
import { kinesisFailure } from './aws-failures';
import type { BatchCache } from './batch-cache';
import { fanOutIterator } from './fan-out-reader';
import { withHeartbeats } from './heartbeat';
import { countRetry } from './metrics';
import { drainingFailure, type ProcessorHost } from './processor-host';
import type { ReadSettings, ShardReader } from './shard-reader';

export interface KinesisActivityDeps {
  kinesis: KinesisClient;
  cache: BatchCache;
  host: ProcessorHost;
  reader: ShardReader;
}

export interface GetRecordsInput extends ReadSettings {
  ref: ShardRef;
  /** The pin the read is for: a wait for records ends when the pin ends on this worker (a stop, a drain). */
  pin?: string;
  iterator: string;
  /** Drop user records at or before this position (resuming after a sub-sequence checkpoint). */
  skipUntil?: ExtendedSequenceNumber;
  /**
   * Keep an empty batch in the worker's memory (to be delivered: `callProcessRecordsEvenForEmptyRecordList`). An empty
   * batch nobody will deliver is not kept, so it cannot pile up in memory.
   * @default false
   */
  keepEmpty?: boolean;
}

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

/**
 * A shard iterator at `position` (GetShardIterator), and when it was taken; failures as typed activity failures. With
 * `fanOut`, the fan-out position the shard's push stream subscribes from (no call: it never expires).
 */
export async function shardIterator(
  kinesis: KinesisClient,
  ref: ShardRef,
  position: ResumePosition,
  fanOut?: FanOutConsumer,
): Promise<{ iterator: string; obtainedAt: string }> {
  const obtainedAt = new Date().toISOString();
  if (fanOut) return { iterator: fanOutIterator(fanOut.consumerArn, position, obtainedAt), obtainedAt };
  try {
    const response = await kinesis.send(new GetShardIteratorCommand(iteratorRequest(ref, position)));
    if (!response.ShardIterator) throw new Error('GetShardIterator returned no iterator');
    return { iterator: response.ShardIterator, obtainedAt };
  } catch (error) {
    throw kinesisFailure(error, `GetShardIterator ${position.type} on ${ref.shardId} of stream ${ref.streamName}`);
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
export function createKinesisActivities({ kinesis, cache, host, reader }: KinesisActivityDeps) {
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
      /** Read through enhanced fan-out: the position is the push stream's, not a GetShardIterator's. */
      fanOut?: FanOutConsumer;
    }): Promise<{ iterator: string; obtainedAt: string }> {
      countRetry(input.ref);
      return shardIterator(kinesis, input.ref, input.position, input.fanOut);
    },

    /**
     * One GetRecords call, de-aggregated and filtered; the records stay in this worker's memory and the workflow gets a
     * handle and metadata. Throttling is retried by the activity's retry policy; an expired iterator is reported as
     * non-retryable ExpiredIterator so the workflow gets a new iterator from the last record it processed.
     */
    async getRecords(input: GetRecordsInput): Promise<BatchSummary> {
      countRetry(input.ref);
      if (host.isDraining) throw drainingFailure(input.ref);
      return withHeartbeats(async () => {
        const signal = input.pin ? host.stopSignal(input.ref, input.pin) : undefined;
        const { records, summary } = await reader.read(input.ref, input.iterator, input, input.skipUntil, signal);
        // The worker began stopping during the read: the batch would not be processed here; it is read again elsewhere.
        if (host.isDraining) throw drainingFailure(input.ref);
        const keep = records.length > 0 || input.keepEmpty === true;
        const handle = keep
          ? cache.put({
              records,
              bytes: summary.bytes,
              readAt: summary.readAt,
              millisBehindLatest: summary.millisBehindLatest,
            })
          : '';
        return { handle, ...summary };
      });
    },
  };
}

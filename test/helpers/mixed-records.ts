/**
 * A stream's worth of plain records and KPL aggregates, put one by one. As the KPL does, an aggregate holds only user
 * records whose partition keys hash to the shard it is put to (a consumer drops the others, as Java KCL does).
 */
import type { KinesisClient } from '@aws-sdk/client-kinesis';
import { inHashKeyRange } from '../../src/kinesis/hash-key';
import { listShards, putRecords } from './kcl';
import { aggregate } from './records';

export interface MixedRecordsOptions {
  /** Kinesis records to put. */
  puts: number;
  /** Every n-th put (the 0th, n-th, 2n-th, ...) is an aggregate. @default 3 */
  aggregateEvery?: number;
  /** User records per aggregate. @default 3 */
  usersPerAggregate?: number;
  /** Start of every user record's data (then `plain-<i>` or `agg-<i>-<j>`). @default '' */
  dataPrefix?: string;
  /** Start of every partition key. @default 'pk' */
  partitionKeyPrefix?: string;
}

export interface PutUserRecord {
  partitionKey: string;
  data: string;
  /** The shard it was put to. */
  shardId: string;
}

/** Puts plain records and aggregates; returns the user records in the order they were put. */
export async function putMixedRecords(
  kinesis: KinesisClient,
  streamName: string,
  options: MixedRecordsOptions,
): Promise<PutUserRecord[]> {
  const shards = await listShards(kinesis, streamName);
  const shardOf = (partitionKey: string): string => {
    const shard = shards.find((candidate) =>
      inHashKeyRange(
        { partitionKey },
        {
          startingHashKey: candidate.HashKeyRange?.StartingHashKey ?? '',
          endingHashKey: candidate.HashKeyRange?.EndingHashKey ?? '',
        },
      ),
    );
    return shard?.ShardId ?? '';
  };
  const every = options.aggregateEvery ?? 3;
  const users = options.usersPerAggregate ?? 3;
  const dataPrefix = options.dataPrefix ?? '';
  const keyPrefix = options.partitionKeyPrefix ?? 'pk';
  const expected: PutUserRecord[] = [];
  const puts: { partitionKey: string; data: Uint8Array | string }[] = [];
  for (let i = 0; i < options.puts; i++) {
    if (i % every === 0) {
      const shardId = shardOf(`${keyPrefix}-${i}-0`);
      const records = Array.from({ length: users }, (_, j) => {
        let partitionKey = `${keyPrefix}-${i}-${j}`;
        for (let n = 0; shardOf(partitionKey) !== shardId; n++) partitionKey = `${keyPrefix}-${i}-${j}-${n}`;
        return { partitionKey, data: `${dataPrefix}agg-${i}-${j}`, shardId };
      });
      const built = aggregate(records);
      puts.push({ partitionKey: built.partitionKey, data: built.data });
      expected.push(...records);
    } else {
      const partitionKey = `${keyPrefix}-${i}`;
      puts.push({ partitionKey, data: `${dataPrefix}plain-${i}` });
      expected.push({ partitionKey, data: `${dataPrefix}plain-${i}`, shardId: shardOf(partitionKey) });
    }
  }
  await putRecords(kinesis, streamName, puts);
  return expected;
}

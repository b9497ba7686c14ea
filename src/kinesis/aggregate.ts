/**
 * Builds KPL aggregates (the Kinesis Producer Library's aggregation format) synchronously, for the demo producer and
 * for tests. aws-kinesis-agg's own `RecordAggregator` mixes up keys that look like array indexes ('1', '42'); this one
 * does not. Encoded with aws-kinesis-agg's own protobuf message type.
 */
import { createHash } from 'node:crypto';

/** A user record to aggregate. String data is encoded as UTF-8. */
export interface UserRecordInit {
  partitionKey: string;
  data: Uint8Array | string;
  explicitHashKey?: string;
}

/** A KPL aggregate, ready for PutRecord. */
export interface Aggregate {
  /** The partition key to put the aggregate with: the first user record's, as aws-kinesis-agg does. */
  partitionKey: string;
  /** Magic bytes, protobuf `AggregatedRecord`, MD5 of the protobuf. */
  data: Buffer;
  /**
   * The explicit hash key to put the aggregate with: the FIRST user record's, if it had one, as aws-kinesis-agg does; an
   * aggregate whose only explicit hash keys are on later records has none here.
   */
  explicitHashKey?: string;
}

/** aws-kinesis-agg's protobufjs message type for `AggregatedRecord` (lib/kpl.json). */
interface KplAggregatedRecordType {
  encode(message: {
    partition_key_table: string[];
    explicit_hash_key_table: string[];
    records: { partition_key_index: number; explicit_hash_key_index?: number; data: Uint8Array; tags: [] }[];
  }): { finish(): Uint8Array };
}

// eslint-disable-next-line @typescript-eslint/no-require-imports -- aws-kinesis-agg's index.d.ts needs aws-sdk v2 types
const { AggregatedRecord } = require('aws-kinesis-agg/lib/common') as { AggregatedRecord: KplAggregatedRecordType };

const KPL_MAGIC = Buffer.from('f3899ac2', 'hex');

const MAX_RECORD_BYTES = 1024 * 1024;

/**
 * Builds one KPL aggregate of the user records, in order, synchronously: the tables list each distinct partition key
 * and explicit hash key in the order first seen (as the KPL writes them), encoded with aws-kinesis-agg's own protobuf
 * message type. Byte for byte what aws-kinesis-agg's `RecordAggregator` builds, except that keys which look like
 * array indexes ('0', '42', ...) keep their user records (see {@link aggregateWithLibrary}).
 *
 * @throws RangeError if `userRecords` is empty, a partition key is empty, or the aggregate exceeds 1 MiB.
 */
export function aggregate(userRecords: readonly UserRecordInit[]): Aggregate {
  const first = userRecords[0];
  if (first === undefined) throw new RangeError('aggregate: no user records');
  const partitionKeys = new Map<string, number>();
  const explicitHashKeys = new Map<string, number>();
  const indexIn = (table: Map<string, number>, key: string) => {
    let index = table.get(key);
    if (index === undefined) table.set(key, (index = table.size));
    return index;
  };
  const records = userRecords.map(({ partitionKey, data, explicitHashKey }) => {
    if (partitionKey === '') throw new RangeError('aggregate: empty partition key');
    return {
      partitionKeyIndex: indexIn(partitionKeys, partitionKey),
      ...(explicitHashKey === undefined ? {} : { explicitHashKeyIndex: indexIn(explicitHashKeys, explicitHashKey) }),
      data,
    };
  });
  const data = rawAggregate({
    partitionKeyTable: [...partitionKeys.keys()],
    explicitHashKeyTable: [...explicitHashKeys.keys()],
    records,
  });
  if (data.length > MAX_RECORD_BYTES) {
    throw new RangeError(`aggregate: ${data.length} bytes, more than a Kinesis record holds (${MAX_RECORD_BYTES})`);
  }
  return {
    partitionKey: first.partitionKey,
    data,
    ...(first.explicitHashKey === undefined ? {} : { explicitHashKey: first.explicitHashKey }),
  };
}

/** The content of a KPL `AggregatedRecord` message, spelled out table by table. */
export interface AggregateMessage {
  partitionKeyTable: string[];
  explicitHashKeyTable?: string[];
  records: { partitionKeyIndex: number; explicitHashKeyIndex?: number; data: Uint8Array | string }[];
}

/**
 * Encodes an aggregate exactly as given, indexes included and unchecked (magic bytes, protobuf, correct MD5): for
 * aggregates the KPL would not write, such as an index outside its table or a record without data.
 */
export function rawAggregate(message: AggregateMessage): Buffer {
  const encoded = AggregatedRecord.encode({
    partition_key_table: message.partitionKeyTable,
    explicit_hash_key_table: message.explicitHashKeyTable ?? [],
    records: message.records.map((record) => ({
      partition_key_index: record.partitionKeyIndex,
      ...(record.explicitHashKeyIndex === undefined ? {} : { explicit_hash_key_index: record.explicitHashKeyIndex }),
      data: typeof record.data === 'string' ? Buffer.from(record.data, 'utf8') : record.data,
      tags: [],
    })),
  }).finish();
  return withDigest(encoded);
}

export function withDigest(message: Uint8Array): Buffer {
  return Buffer.concat([KPL_MAGIC, message, createHash('md5').update(message).digest()]);
}

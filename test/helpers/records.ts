/**
 * Factories for Kinesis records in tests: SDK v3 records as GetRecords returns them, real KPL aggregates (encoded with
 * aws-kinesis-agg's protobuf type, synchronously), damaged aggregates and realistic sequence numbers.
 *
 * Independent of any emulator: integration tests put `aggregate(...)`'s output with PutRecord themselves.
 */
import type { _Record } from '@aws-sdk/client-kinesis';

export {
  aggregate,
  rawAggregate,
  type Aggregate,
  type AggregateMessage,
  type UserRecordInit,
} from '../../src/kinesis/aggregate';
import { aggregate, type Aggregate, type UserRecordInit, withDigest } from '../../src/kinesis/aggregate';

/** The part of aws-kinesis-agg's RecordAggregator used here (its own index.d.ts needs aws-sdk v2 types). */
interface KplRecordAggregator {
  /** Throws if the record has empty data or partition key, or does not fit in the aggregate (1 MiB). */
  addUserRecord(record: { partitionKey: string; data: Buffer; explicitHashKey?: string }): void;
  /** Undefined when no record was added. Note the PascalCase `ExplicitHashKey` next to camelCase `partitionKey`. */
  build(): { partitionKey: string; data: Buffer; ExplicitHashKey?: string } | undefined;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports -- its index.d.ts needs aws-sdk v2 and aws-lambda types
const { RecordAggregator } = require('aws-kinesis-agg') as {
  RecordAggregator: new (onReady: (err: unknown, encoded?: unknown) => void) => KplRecordAggregator;
};
const KPL_MAGIC = Buffer.from('f3899ac2', 'hex');
const DIGEST_BYTES = 16;

/** A fixed arrival time, so that records built in tests compare equal. */
export const ARRIVAL_TIME = new Date('2024-05-01T12:00:00.000Z');

export interface RecordInit {
  /** A sequence number, or n for {@link sequenceNumber}(n). */
  sequenceNumber: string | number;
  /** @default 'pk' */
  partitionKey?: string;
  /** Record data; string data is encoded as UTF-8. Pass an {@link aggregate}'s data for an aggregated record. */
  data: Uint8Array | string;
  /** @default ARRIVAL_TIME; `null` leaves the field out, as some emulators do. */
  approximateArrivalTimestamp?: Date | null;
}

/**
 * A Kinesis record as the SDK v3 returns it from GetRecords. Composes with {@link aggregate}:
 * `plainRecord({ sequenceNumber: 2, ...aggregate(userRecords) })`.
 */
export function plainRecord(init: RecordInit): _Record {
  const record: _Record = {
    SequenceNumber: typeof init.sequenceNumber === 'number' ? sequenceNumber(init.sequenceNumber) : init.sequenceNumber,
    PartitionKey: init.partitionKey ?? 'pk',
    Data: typeof init.data === 'string' ? Buffer.from(init.data, 'utf8') : init.data,
  };
  if (init.approximateArrivalTimestamp !== null) {
    record.ApproximateArrivalTimestamp = init.approximateArrivalTimestamp ?? ARRIVAL_TIME;
  }
  return record;
}

/**
 * Builds one aggregate with aws-kinesis-agg's `RecordAggregator` (`addUserRecord` for each, then `build()`), as a
 * producer using that library would. Beware its bug: it builds its key tables as plain objects and writes them out with
 * `Object.keys`, which lists integer-like keys ('1', '42') first in numeric order, while the user records keep the
 * insertion-order indexes. User records with such partition keys or explicit hash keys then point at other records'
 * keys. Use {@link aggregate} unless the library's exact output is the point.
 *
 * @throws as `addUserRecord` does: empty data or partition key, or more than 1 MiB.
 */
export function aggregateWithLibrary(userRecords: readonly UserRecordInit[]): Aggregate {
  const aggregator = new RecordAggregator(() => undefined);
  for (const { partitionKey, data, explicitHashKey } of userRecords) {
    // A fresh object with Buffer data: the library replaces string data on the object it is given, and rejects ''.
    aggregator.addUserRecord({
      partitionKey,
      data:
        typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data.buffer, data.byteOffset, data.length),
      ...(explicitHashKey === undefined ? {} : { explicitHashKey }),
    });
  }
  const built = aggregator.build();
  if (built === undefined) throw new RangeError('aggregateWithLibrary: no user records');
  return {
    partitionKey: built.partitionKey,
    data: built.data,
    ...(built.ExplicitHashKey === undefined ? {} : { explicitHashKey: built.ExplicitHashKey }),
  };
}

/** How {@link corruptAggregate} damages an aggregate. */
export type CorruptionKind = 'checksum' | 'truncated' | 'garbage';

/**
 * Data that starts with the KPL magic bytes but cannot be de-aggregated:
 * - `checksum`: a valid aggregate whose MD5 digest has its last byte flipped (fails only when checksums are verified);
 * - `truncated`: a valid aggregate's protobuf cut short inside its last user record;
 * - `garbage`: bytes that are no protobuf message (an invalid wire type).
 *
 * `truncated` and `garbage` end with the correct MD5 of their (broken) protobuf, so that they fail in protobuf decoding
 * whether checksums are verified or not.
 */
export function corruptAggregate(kind: CorruptionKind): Buffer {
  const valid = aggregate([
    { partitionKey: 'corrupt-1', data: 'the first user record of a damaged aggregate' },
    { partitionKey: 'corrupt-2', data: 'the second user record of a damaged aggregate' },
  ]).data;
  switch (kind) {
    case 'checksum': {
      const data = Buffer.from(valid);
      data[data.length - 1] = data[data.length - 1]! ^ 0xff;
      return data;
    }
    case 'truncated':
      return withDigest(valid.subarray(KPL_MAGIC.length, valid.length - DIGEST_BYTES - 10));
    case 'garbage':
      // A tag with wire type 7, which protobuf does not define, then noise. (Beware: protobufjs reads a known field
      // whatever its wire type, so much random garbage "decodes" into an aggregate of nothing.)
      return withDigest(Buffer.from('07deadbeef0badf00d', 'hex'));
  }
}

/** A realistic first sequence number of a shard (56 digits, as Kinesis issues them). */
const BASE_SEQUENCE_NUMBER = 49590338271490256608559692538361571095921575989136588898n;
const SEQUENCE_NUMBER_STEP = 10n ** 20n;

/**
 * The n-th sequence number of a made-up shard: 56 decimal digits, strictly increasing with n (n >= 0 and at most
 * about 10^15 keep 56 digits).
 */
export function sequenceNumber(n: number): string {
  if (!Number.isSafeInteger(n) || n < 0)
    throw new RangeError(`sequenceNumber: n must be a safe integer >= 0, got ${n}`);
  return (BASE_SEQUENCE_NUMBER + BigInt(n) * SEQUENCE_NUMBER_STEP).toString();
}

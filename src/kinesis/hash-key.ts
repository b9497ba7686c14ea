/**
 * Where a record falls in a stream's 128-bit hash key space, the way Kinesis routes records to shards: by the explicit
 * hash key when the producer set one, else by the MD5 of the partition key.
 *
 * Used to drop user records of a KPL aggregate that belong to another shard (after a reshard, an aggregate put with one
 * hash key may carry user records whose own keys fall into a sibling shard), as KCL does.
 */
import { createHash } from 'node:crypto';
import type { HashKeyRange } from '../consumer-types';

export type { HashKeyRange };

const MAX_HASH_KEY = (1n << 128n) - 1n;
const DECIMAL = /^\d{1,39}$/;

/**
 * The record's hash key: its explicit hash key if present, else the MD5 digest of the UTF-8 bytes of its partition key
 * read as an unsigned 128-bit big-endian integer.
 *
 * @throws RangeError if the explicit hash key is not a decimal integer between 0 and 2^128 - 1.
 */
export function hashKeyOf(record: { partitionKey: string; explicitHashKey?: string }): bigint {
  if (record.explicitHashKey !== undefined) return parseHashKey(record.explicitHashKey, 'explicit hash key');
  const digest = createHash('md5').update(record.partitionKey, 'utf8').digest();
  return (digest.readBigUInt64BE(0) << 64n) | digest.readBigUInt64BE(8);
}

/** True if the record's hash key (see {@link hashKeyOf}) lies within the range, both ends included. */
export function inHashKeyRange(
  record: { partitionKey: string; explicitHashKey?: string },
  range: HashKeyRange,
): boolean {
  const hashKey = hashKeyOf(record);
  return (
    parseHashKey(range.startingHashKey, 'startingHashKey') <= hashKey &&
    hashKey <= parseHashKey(range.endingHashKey, 'endingHashKey')
  );
}

function parseHashKey(value: string, what: string): bigint {
  const hashKey = DECIMAL.test(value) ? BigInt(value) : -1n;
  if (hashKey < 0n || hashKey > MAX_HASH_KEY) {
    throw new RangeError(`${what} must be a decimal integer between 0 and 2^128 - 1, got "${value}"`);
  }
  return hashKey;
}

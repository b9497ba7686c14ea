/**
 * Where a record falls in a stream's 128-bit hash key space, the way Kinesis routes records to shards: by the explicit
 * hash key when the producer set one, else by the MD5 of the partition key.
 *
 * Used to drop user records of a KPL aggregate that belong to another shard (after a reshard, an aggregate put with one
 * hash key may carry user records whose own keys fall into a sibling shard), as KCL does.
 */
import * as crypto from 'node:crypto';
import type { HashKeyRange } from '../consumer-types';

export type { HashKeyRange };

const MAX_HASH_KEY = (1n << 128n) - 1n;
const DECIMAL = /^\d{1,39}$/;

/**
 * One-shot hashing (`crypto.hash`, Node 20.12+) is about a third faster than a Hash object per key, and KPL aggregates
 * bring one key per user record; older Node versions fall back to `createHash`.
 */
const oneShotHash = (crypto as { hash?: typeof crypto.hash }).hash;

/** The MD5 digest of a partition key's UTF-8 bytes. */
function md5(partitionKey: string): Buffer {
  return oneShotHash
    ? oneShotHash('md5', partitionKey, 'buffer')
    : crypto.createHash('md5').update(partitionKey, 'utf8').digest();
}

/**
 * The record's hash key: its explicit hash key if present, else the MD5 digest of the UTF-8 bytes of its partition key
 * read as an unsigned 128-bit big-endian integer.
 *
 * @throws RangeError if the explicit hash key is not a decimal integer between 0 and 2^128 - 1.
 */
export function hashKeyOf(record: { partitionKey: string; explicitHashKey?: string }): bigint {
  if (record.explicitHashKey !== undefined) return parseHashKey(record.explicitHashKey, 'explicit hash key');
  const digest = md5(record.partitionKey);
  return (digest.readBigUInt64BE(0) << 64n) | digest.readBigUInt64BE(8);
}

/** True if the record's hash key (see {@link hashKeyOf}) lies within the range, both ends included. */
export function inHashKeyRange(
  record: { partitionKey: string; explicitHashKey?: string },
  range: HashKeyRange,
): boolean {
  return hashKeyRangeFilter(range)(record);
}

/**
 * {@link inHashKeyRange} for many records of one range: the range is parsed once, a partition key's MD5 digest is
 * compared as bytes (no BigInt per record), and a range that spans the whole key space (a stream's only shard) accepts
 * every record without an explicit hash key without hashing it.
 *
 * @throws RangeError (from the filter) for an explicit hash key that is not a decimal integer between 0 and 2^128 - 1.
 */
export function hashKeyRangeFilter(
  range: HashKeyRange,
): (record: { partitionKey: string; explicitHashKey?: string }) => boolean {
  const start = parseHashKey(range.startingHashKey, 'startingHashKey');
  const end = parseHashKey(range.endingHashKey, 'endingHashKey');
  const inRange = (record: { explicitHashKey?: string }) => {
    const hashKey = parseHashKey(record.explicitHashKey!, 'explicit hash key');
    return start <= hashKey && hashKey <= end;
  };
  if (start === 0n && end === MAX_HASH_KEY) {
    return (record) => record.explicitHashKey === undefined || inRange(record);
  }
  const startBytes = toBytes(start);
  const endBytes = toBytes(end);
  // A batch's user records often share partition keys (a KPL aggregate has a table of them): hash each key once.
  const byKey = new Map<string, boolean>();
  return (record) => {
    if (record.explicitHashKey !== undefined) return inRange(record);
    let inside = byKey.get(record.partitionKey);
    if (inside === undefined) {
      const digest = md5(record.partitionKey);
      inside = Buffer.compare(startBytes, digest) <= 0 && Buffer.compare(digest, endBytes) <= 0;
      if (byKey.size < 100_000) byKey.set(record.partitionKey, inside);
    }
    return inside;
  };
}

/** A hash key as 16 big-endian bytes, comparable with an MD5 digest. */
function toBytes(hashKey: bigint): Buffer {
  const bytes = Buffer.alloc(16);
  bytes.writeBigUInt64BE(hashKey >> 64n, 0);
  bytes.writeBigUInt64BE(hashKey & 0xffffffffffffffffn, 8);
  return bytes;
}

function parseHashKey(value: string, what: string): bigint {
  const hashKey = DECIMAL.test(value) ? BigInt(value) : -1n;
  if (hashKey < 0n || hashKey > MAX_HASH_KEY) {
    throw new RangeError(`${what} must be a decimal integer between 0 and 2^128 - 1, got "${value}"`);
  }
  return hashKey;
}

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { hashKeyOf, hashKeyRangeFilter, inHashKeyRange, type HashKeyRange } from '../../src/kinesis/hash-key';

const MAX_HASH_KEY = 2n ** 128n - 1n;
const FULL_RANGE: HashKeyRange = { startingHashKey: '0', endingHashKey: MAX_HASH_KEY.toString() };

/** MD5 as hex, read as a number: computed differently from the module under test. */
function md5AsBigInt(partitionKey: string): bigint {
  return BigInt(`0x${createHash('md5').update(Buffer.from(partitionKey, 'utf8')).digest('hex')}`);
}

describe('hashKeyOf', () => {
  test('maps a partition key to its MD5 as an unsigned 128-bit big-endian integer', () => {
    // MD5("a") = 0cc175b9c0f1b6a831c399e269772661
    assert.equal(hashKeyOf({ partitionKey: 'a' }), 0x0cc175b9c0f1b6a831c399e269772661n);
    assert.equal(hashKeyOf({ partitionKey: 'a' }), 16955237001963240173058271559858726497n);
  });

  test('agrees with an independently computed MD5 for ASCII, multi-byte and long keys', () => {
    const keys = ['b', 'user-42', 'é', '€uro', '🔑', 'k'.repeat(256), '0', ' '];
    for (const partitionKey of keys) {
      assert.equal(hashKeyOf({ partitionKey }), md5AsBigInt(partitionKey), partitionKey);
    }
  });

  test('reads digests with a high first bit as unsigned (never negative)', () => {
    // Find a key whose digest starts with a byte >= 0x80, so that a signed reading would go wrong.
    const partitionKey = Array.from({ length: 100 }, (_, i) => `key-${i}`).find(
      (key) => md5AsBigInt(key) >= 2n ** 127n,
    );
    assert.ok(partitionKey !== undefined);
    const hashKey = hashKeyOf({ partitionKey });
    assert.equal(hashKey, md5AsBigInt(partitionKey));
    assert.ok(hashKey >= 2n ** 127n && hashKey <= MAX_HASH_KEY);
  });

  test('an explicit hash key wins over the partition key', () => {
    assert.equal(hashKeyOf({ partitionKey: 'a', explicitHashKey: '42' }), 42n);
    assert.equal(hashKeyOf({ partitionKey: 'a', explicitHashKey: '0' }), 0n);
    assert.equal(hashKeyOf({ partitionKey: 'a', explicitHashKey: MAX_HASH_KEY.toString() }), MAX_HASH_KEY);
  });

  test('rejects explicit hash keys that are not decimal integers in [0, 2^128 - 1]', () => {
    for (const explicitHashKey of [
      '',
      '-1',
      (MAX_HASH_KEY + 1n).toString(),
      '0x10',
      ' 1',
      '1.5',
      'abc',
      '1'.repeat(40),
    ]) {
      assert.throws(
        () => hashKeyOf({ partitionKey: 'a', explicitHashKey }),
        RangeError,
        JSON.stringify(explicitHashKey),
      );
    }
  });
});

describe('inHashKeyRange', () => {
  const hashOfA = 0x0cc175b9c0f1b6a831c399e269772661n;
  const range = (start: bigint, end: bigint): HashKeyRange => ({
    startingHashKey: start.toString(),
    endingHashKey: end.toString(),
  });

  test('includes both ends of the range', () => {
    assert.equal(inHashKeyRange({ partitionKey: 'a' }, range(hashOfA, hashOfA)), true);
    assert.equal(inHashKeyRange({ partitionKey: 'a' }, range(hashOfA, hashOfA + 1n)), true);
    assert.equal(inHashKeyRange({ partitionKey: 'a' }, range(hashOfA - 1n, hashOfA)), true);
  });

  test('excludes hash keys just outside the range', () => {
    assert.equal(inHashKeyRange({ partitionKey: 'a' }, range(hashOfA + 1n, MAX_HASH_KEY)), false);
    assert.equal(inHashKeyRange({ partitionKey: 'a' }, range(0n, hashOfA - 1n)), false);
  });

  test('places a key in exactly one of two halves after a split', () => {
    const lower = range(0n, 2n ** 127n - 1n);
    const upper = range(2n ** 127n, MAX_HASH_KEY);
    assert.equal(inHashKeyRange({ partitionKey: 'a' }, lower), true);
    assert.equal(inHashKeyRange({ partitionKey: 'a' }, upper), false);
    for (let i = 0; i < 50; i++) {
      const record = { partitionKey: `key-${i}` };
      assert.notEqual(inHashKeyRange(record, lower), inHashKeyRange(record, upper), record.partitionKey);
    }
  });

  test('uses the explicit hash key when there is one', () => {
    const record = { partitionKey: 'a', explicitHashKey: '1000' };
    assert.equal(inHashKeyRange(record, range(1000n, 2000n)), true);
    assert.equal(inHashKeyRange(record, range(0n, 999n)), false);
    assert.equal(inHashKeyRange(record, range(hashOfA, hashOfA)), false);
  });

  test('the whole key space holds the extremes', () => {
    assert.equal(inHashKeyRange({ partitionKey: 'x', explicitHashKey: '0' }, FULL_RANGE), true);
    assert.equal(inHashKeyRange({ partitionKey: 'x', explicitHashKey: MAX_HASH_KEY.toString() }, FULL_RANGE), true);
  });

  test('rejects a malformed range', () => {
    assert.throws(
      () => inHashKeyRange({ partitionKey: 'a' }, { startingHashKey: 'zero', endingHashKey: '1' }),
      RangeError,
    );
  });
});

describe('hashKeyRangeFilter', () => {
  const range = (start: bigint, end: bigint): HashKeyRange => ({
    startingHashKey: start.toString(),
    endingHashKey: end.toString(),
  });

  test('agrees with the hash key of every record, at and around the ends of many ranges', () => {
    const records = [
      ...Array.from({ length: 200 }, (_, i) => ({ partitionKey: `key-${i}` })),
      { partitionKey: 'é€🔑' },
      { partitionKey: 'a', explicitHashKey: '12345' },
    ];
    for (const probe of records.slice(0, 20)) {
      const hashKey = hashKeyOf(probe);
      const ranges = [
        range(hashKey, hashKey),
        range(hashKey + 1n, MAX_HASH_KEY),
        range(0n, hashKey - 1n),
        range(0n, 2n ** 127n - 1n),
        range(2n ** 127n, MAX_HASH_KEY),
        range(2n ** 64n, 2n ** 64n + 2n ** 120n),
      ];
      for (const r of ranges) {
        const filter = hashKeyRangeFilter(r);
        for (const record of records) {
          const expected =
            BigInt(r.startingHashKey) <= hashKeyOf(record) && hashKeyOf(record) <= BigInt(r.endingHashKey);
          assert.equal(
            filter(record),
            expected,
            `${JSON.stringify(record)} in ${r.startingHashKey}..${r.endingHashKey}`,
          );
        }
      }
    }
  });

  test('the whole key space accepts every record, and still rejects a malformed explicit hash key', () => {
    const filter = hashKeyRangeFilter(FULL_RANGE);
    assert.equal(filter({ partitionKey: 'a' }), true);
    assert.equal(filter({ partitionKey: 'a', explicitHashKey: MAX_HASH_KEY.toString() }), true);
    assert.throws(() => filter({ partitionKey: 'a', explicitHashKey: '-1' }), RangeError);
  });

  test('rejects a malformed range when it is built', () => {
    assert.throws(() => hashKeyRangeFilter({ startingHashKey: '0', endingHashKey: 'max' }), RangeError);
  });
});

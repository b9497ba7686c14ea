/**
 * Fan-out positions: where a shard's push stream subscribes from, carried where a polling consumer carries its shard
 * iterator. Each resume position maps to SubscribeToShard's starting position; LATEST is pinned to the time the position
 * was taken (a record put before the first subscription must not be skipped); anything else is refused.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { fanOutIterator, isFanOutIterator, parseFanOutIterator } from '../../src/activities/fan-out-reader';

const ARN = 'arn:aws:kinesis:us-east-1:123456789012:stream/orders/consumer/billing:1700000000';
const SEQ = '49546986683135544286507457936321625675700192471156785154';

describe('fan-out positions', () => {
  test('each resume position becomes the starting position SubscribeToShard takes', () => {
    const at = '2026-12-05T10:00:00.000Z';
    const cases = [
      [{ type: 'TRIM_HORIZON' }, { Type: 'TRIM_HORIZON' }],
      [{ type: 'LATEST' }, { Type: 'AT_TIMESTAMP', Timestamp: new Date(at) }],
      [
        { type: 'AT_TIMESTAMP', timestamp: '2026-01-31T12:00:00Z' },
        { Type: 'AT_TIMESTAMP', Timestamp: new Date('2026-01-31T12:00:00Z') },
      ],
      [
        { type: 'AT_SEQUENCE_NUMBER', sequenceNumber: SEQ },
        { Type: 'AT_SEQUENCE_NUMBER', SequenceNumber: SEQ },
      ],
      [
        { type: 'AFTER_SEQUENCE_NUMBER', sequenceNumber: SEQ },
        { Type: 'AFTER_SEQUENCE_NUMBER', SequenceNumber: SEQ },
      ],
    ] as const;
    for (const [position, starting] of cases) {
      const iterator = fanOutIterator(ARN, position, at);
      assert.ok(isFanOutIterator(iterator), iterator);
      assert.deepEqual(parseFanOutIterator(iterator), { consumerArn: ARN, startingPosition: starting }, position.type);
    }
  });

  test('a Kinesis shard iterator is not a fan-out position, and a malformed one is refused', () => {
    assert.equal(isFanOutIterator('AAAAAAAAAAH7w6Q1m5VqTiV0g+yXRzb0bK0n6ycuO3fQ2/Hy4M7y'), false);
    assert.throws(() => parseFanOutIterator('fan-out|'), /not a fan-out position/);
    assert.throws(() => parseFanOutIterator(`fan-out|${ARN}|SOMEWHERE|1`), /not a fan-out position/);
  });
});

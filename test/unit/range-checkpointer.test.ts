import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { RangeCheckpointer } from '../../src/activities/range-checkpointer';
import { CheckpointOutOfRangeError } from '../../src/errors';
import type { KinesisRecord } from '../../src/record-processor';
import { sequenceNumber } from '../helpers/records';

const at = new Date(0);
const plain = (n: number): KinesisRecord => ({
  sequenceNumber: sequenceNumber(n),
  partitionKey: 'pk',
  data: new Uint8Array(),
  approximateArrivalTimestamp: at,
});
const user = (n: number, sub: number): KinesisRecord => ({ ...plain(n), subSequenceNumber: sub });

// A batch: plain record 1, an aggregate at 2 with user records 0..2, plain record 3.
const batch = [plain(1), user(2, 0), user(2, 1), user(2, 2), plain(3)];
const lastDelivered = { sequenceNumber: sequenceNumber(3) };

describe('RangeCheckpointer: a checkpoint must lie in (last checkpoint, last record delivered]', () => {
  test('checkpoint() asks for the last record delivered', async () => {
    const checkpointer = new RangeCheckpointer('shard-1', { sequenceNumber: sequenceNumber(0) }, lastDelivered, batch);
    await checkpointer.checkpoint();
    assert.deepEqual(checkpointer.checkpointRequested, lastDelivered);
  });

  test('checkpoint(record) asks for that user record, sub-sequence number included', async () => {
    const checkpointer = new RangeCheckpointer('shard-1', 'TRIM_HORIZON', lastDelivered, batch);
    await checkpointer.checkpoint(user(2, 1));
    assert.deepEqual(checkpointer.checkpointRequested, { sequenceNumber: sequenceNumber(2), subSequenceNumber: 1 });
  });

  test('checkpoint(sequenceNumber) of an aggregate means the whole record: its last user record delivered', async () => {
    const checkpointer = new RangeCheckpointer('shard-1', undefined, lastDelivered, batch);
    await checkpointer.checkpoint(sequenceNumber(2));
    assert.deepEqual(checkpointer.checkpointRequested, { sequenceNumber: sequenceNumber(2), subSequenceNumber: 2 });
    await checkpointer.checkpoint(sequenceNumber(3));
    assert.deepEqual(checkpointer.checkpointRequested, { sequenceNumber: sequenceNumber(3) });
  });

  test('checkpoint(sequenceNumber, sub) within the range is taken; later calls must not move backward', async () => {
    const checkpointer = new RangeCheckpointer('shard-1', { sequenceNumber: sequenceNumber(1) }, lastDelivered, batch);
    await checkpointer.checkpoint(sequenceNumber(2), 0);
    await assert.rejects(checkpointer.checkpoint(sequenceNumber(1)), CheckpointOutOfRangeError);
    await assert.rejects(checkpointer.checkpoint(sequenceNumber(2), 0.5), CheckpointOutOfRangeError);
    await checkpointer.checkpoint(sequenceNumber(2), 2);
    assert.deepEqual(checkpointer.checkpointRequested, { sequenceNumber: sequenceNumber(2), subSequenceNumber: 2 });
  });

  test('the last checkpoint again is accepted and does nothing, as in Java KCL', async () => {
    const last = { sequenceNumber: sequenceNumber(2), subSequenceNumber: 1 };
    const checkpointer = new RangeCheckpointer('shard-1', last, lastDelivered, batch);
    await checkpointer.checkpoint(user(2, 1));
    await checkpointer.checkpoint(sequenceNumber(2), 1);
    assert.equal(checkpointer.checkpointRequested, undefined, 'nothing new to write');
    // The position asked for last in this call counts the same way.
    await checkpointer.checkpoint(sequenceNumber(3));
    await checkpointer.checkpoint(sequenceNumber(3));
    await checkpointer.checkpoint(plain(3));
    assert.deepEqual(checkpointer.checkpointRequested, { sequenceNumber: sequenceNumber(3) });
    // A plain record checkpointed again (sub-sequence number absent = 0).
    const plainLast = new RangeCheckpointer('shard-1', lastDelivered, lastDelivered, []);
    await plainLast.checkpoint(sequenceNumber(3));
    await plainLast.checkpoint(sequenceNumber(3), 0);
    assert.equal(plainLast.checkpointRequested, undefined);
  });

  test('before the last checkpoint is rejected, with a message naming the range', async () => {
    const checkpointer = new RangeCheckpointer(
      'shard-1',
      { sequenceNumber: sequenceNumber(2), subSequenceNumber: 1 },
      lastDelivered,
      batch,
    );
    await assert.rejects(checkpointer.checkpoint(user(2, 0)), (error: unknown) => {
      assert.ok(error instanceof CheckpointOutOfRangeError);
      assert.match(
        error.message,
        /shard-1: cannot checkpoint at \d+\/0: it must not be before the last checkpoint \(\d+\/1\) nor after the last record delivered \(\d+\)/,
      );
      return true;
    });
    await assert.rejects(checkpointer.checkpoint(plain(1)), CheckpointOutOfRangeError);
    assert.equal(checkpointer.checkpointRequested, undefined, 'nothing asked for');
  });

  test('beyond the last record delivered is rejected', async () => {
    const checkpointer = new RangeCheckpointer('shard-1', undefined, lastDelivered, batch);
    await assert.rejects(checkpointer.checkpoint(sequenceNumber(4)), CheckpointOutOfRangeError);
    await assert.rejects(checkpointer.checkpoint(sequenceNumber(3), 1), CheckpointOutOfRangeError);
    assert.equal(checkpointer.checkpointRequested, undefined);
  });

  test('malformed positions are rejected: not a sequence number, a negative or fractional sub-sequence number', async () => {
    const checkpointer = new RangeCheckpointer('shard-1', undefined, lastDelivered, batch);
    await assert.rejects(checkpointer.checkpoint('abc'), /not a sequence number/);
    await assert.rejects(checkpointer.checkpoint(sequenceNumber(2), -1), /whole number >= 0/);
    await assert.rejects(checkpointer.checkpoint(sequenceNumber(2), 0.5), /whole number >= 0/);
  });

  test('checkpoint() with nothing new delivered (an empty batch) does nothing instead of failing', async () => {
    const checkpointer = new RangeCheckpointer('shard-1', lastDelivered, lastDelivered, []);
    await checkpointer.checkpoint();
    assert.equal(checkpointer.checkpointRequested, undefined);
    const never = new RangeCheckpointer('shard-1', undefined, undefined, []);
    await never.checkpoint();
    assert.equal(never.checkpointRequested, undefined);
  });
});

describe('RangeCheckpointer.prepareCheckpoint: a pending checkpoint, committed by its PreparedCheckpointer', () => {
  /** A checkpointer whose writes are logged in order (`write` for checkpoints, `prepare` for pending ones). */
  function logged(lastCheckpoint: KinesisRecord | undefined) {
    const writes: string[] = [];
    const label = (p: { sequenceNumber: string; subSequenceNumber?: number }) =>
      `${[0, 1, 2, 3, 4].find((n) => sequenceNumber(n) === p.sequenceNumber)}/${p.subSequenceNumber ?? '-'}`;
    const checkpointer = new RangeCheckpointer(
      'shard-1',
      lastCheckpoint && { sequenceNumber: lastCheckpoint.sequenceNumber },
      lastDelivered,
      batch,
      {
        write: async (p) => void writes.push(`write ${label(p)}`),
        prepare: async (p) => void writes.push(`prepare ${label(p)}`),
      },
    );
    return { checkpointer, writes };
  }

  test('prepare writes the pending position only; its checkpoint() commits exactly that position', async () => {
    const { checkpointer, writes } = logged(plain(1));

    const prepared = await checkpointer.prepareCheckpoint(user(2, 1));
    assert.deepEqual(writes, ['prepare 2/1']);
    assert.equal(checkpointer.checkpointRequested, undefined, 'the checkpoint has not moved');
    assert.deepEqual(prepared.pendingCheckpoint(), { sequenceNumber: sequenceNumber(2), subSequenceNumber: 1 });
    await prepared.checkpoint();

    assert.deepEqual(writes, ['prepare 2/1', 'write 2/1']);
    assert.deepEqual(checkpointer.checkpointRequested, { sequenceNumber: sequenceNumber(2), subSequenceNumber: 1 });
    assert.equal(checkpointer.preparedCheckpoint, undefined);
  });

  test('same overloads as checkpoint: () the last record delivered, (sequenceNumber) the whole aggregate', async () => {
    const { checkpointer, writes } = logged(plain(1));
    assert.deepEqual((await checkpointer.prepareCheckpoint(sequenceNumber(2))).pendingCheckpoint(), {
      sequenceNumber: sequenceNumber(2),
      subSequenceNumber: 2,
    });
    assert.deepEqual((await checkpointer.prepareCheckpoint()).pendingCheckpoint(), lastDelivered);
    assert.deepEqual(writes, ['prepare 2/2', 'prepare 3/-']);
  });

  test('range-checked like checkpoint: before the last checkpoint or beyond the last delivered is rejected', async () => {
    const { checkpointer, writes } = logged(user(2, 1));
    await assert.rejects(checkpointer.prepareCheckpoint(plain(1)), CheckpointOutOfRangeError);
    await assert.rejects(checkpointer.prepareCheckpoint(sequenceNumber(4)), CheckpointOutOfRangeError);
    assert.deepEqual(writes, []);
  });

  test('a later checkpoint discards it, and committing it after a checkpoint moved past it is rejected', async () => {
    const { checkpointer, writes } = logged(undefined);
    const prepared = await checkpointer.prepareCheckpoint(user(2, 0));
    await checkpointer.checkpoint(plain(3));

    await assert.rejects(prepared.checkpoint(), CheckpointOutOfRangeError);
    assert.deepEqual(writes, ['prepare 2/0', 'write 3/-']);
    assert.equal(checkpointer.preparedCheckpoint, undefined);
  });

  test('preparing the last checkpoint writes nothing, and committing it does nothing (as Java KCL)', async () => {
    const { checkpointer, writes } = logged(plain(3));
    const prepared = await checkpointer.prepareCheckpoint();
    assert.deepEqual(prepared.pendingCheckpoint(), lastDelivered);
    await prepared.checkpoint();
    assert.deepEqual(writes, []);
  });

  test('once the call that prepared it is over, committing it is refused with a clear error and writes nothing', async () => {
    const { checkpointer, writes } = logged(plain(1));
    const prepared = await checkpointer.prepareCheckpoint(plain(3));

    await checkpointer.close();

    await assert.rejects(prepared.checkpoint(), /the call that prepared it has returned/);
    assert.deepEqual(writes, ['prepare 3/-']);
  });

  test('a failed prepare rejects and is kept as the write failure', async () => {
    const lost = new Error('lease lost');
    const checkpointer = new RangeCheckpointer('shard-1', undefined, lastDelivered, batch, {
      write: async () => undefined,
      prepare: async () => {
        throw lost;
      },
    });
    await assert.rejects(checkpointer.prepareCheckpoint(plain(1)), (error: unknown) => error === lost);
    assert.equal(checkpointer.writeFailure, lost);
  });
});

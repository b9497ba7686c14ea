import { CheckpointOutOfRangeError } from '../errors';
import {
  type Checkpoint,
  comparePositions,
  type ExtendedSequenceNumber,
  formatPosition,
  isSequenceNumber,
  positionOf,
} from '../positions';
import type { Checkpointer, KinesisRecord, PreparedCheckpointer } from '../record-processor';

/** Makes a checkpoint durable (a fenced write to the lease table); rejects if it cannot. */
export type CheckpointWriter = (position: ExtendedSequenceNumber) => Promise<void>;

/** Writes where the checkpoints go: `write` a checkpoint, `prepare` a pending one (both durable when they resolve). */
export interface CheckpointWriters {
  write: CheckpointWriter;
  prepare: CheckpointWriter;
}

type RecordTarget = string | Pick<KinesisRecord, 'sequenceNumber' | 'subSequenceNumber'>;

/**
 * The checkpointer a processor gets. It checks that the position asked for lies in (last checkpoint, last delivered
 * record]; the last checkpoint itself is accepted and changes nothing (as Java KCL's checkpointer does). With a writer,
 * `checkpoint()` resolves once the position is durable (and rejects with the writer's error, e.g. a
 * `CheckpointConflictError` when the lease was lost); without one it only records the position.
 */
export class RangeCheckpointer implements Checkpointer {
  private requested: ExtendedSequenceNumber | undefined;
  /** Writes run one at a time, in the order they were asked for. */
  private tail: Promise<unknown> = Promise.resolve();
  /** The error of a failed write, kept even if the processor swallowed it. */
  private failure: unknown;

  /**
   * @param shardId for messages
   * @param lastCheckpoint the durable checkpoint (a sentinel such as TRIM_HORIZON counts as "nothing checkpointed")
   * @param lastDelivered the last user record delivered to the processor so far, if any
   * @param records the batch being processed (to resolve `checkpoint(sequenceNumber)` to its last user record)
   */
  constructor(
    private readonly shardId: string,
    lastCheckpoint: Checkpoint | undefined,
    private readonly lastDelivered: ExtendedSequenceNumber | undefined,
    private readonly records: readonly KinesisRecord[] = [],
    writer?: CheckpointWriter | CheckpointWriters,
  ) {
    this.floor = typeof lastCheckpoint === 'object' ? lastCheckpoint : undefined;
    this.writers = typeof writer === 'function' ? { write: writer } : writer;
  }

  private readonly writers: { write: CheckpointWriter; prepare?: CheckpointWriter } | undefined;
  private prepared: ExtendedSequenceNumber | undefined;

  /** The error of the first write that failed, if any (the processor may have caught it). */
  get writeFailure(): unknown {
    return this.failure;
  }

  /** Waits for writes still under way (a processor may call `checkpoint()` without awaiting it). */
  async settled(): Promise<void> {
    await this.tail.catch(() => undefined);
  }

  /**
   * The processor's call is over: waits for writes still under way, and from now on a prepared checkpointer of this
   * call refuses to commit (its bounds and lease counter belong to the call that ended).
   */
  async close(): Promise<void> {
    this.closed = true;
    await this.settled();
  }

  private closed = false;

  private record(position: ExtendedSequenceNumber): Promise<void> {
    this.requested = position;
    this.prepared = undefined;
    return this.enqueue(this.writers?.write, position);
  }

  /** Runs a write after the ones asked for before it; remembers its failure. */
  private enqueue(writer: CheckpointWriter | undefined, position: ExtendedSequenceNumber): Promise<void> {
    if (!writer) return Promise.resolve();
    const write = this.tail.then(() => writer(position));
    this.tail = write.catch((error: unknown) => {
      this.failure ??= error;
    });
    return write;
  }

  private readonly floor: ExtendedSequenceNumber | undefined;

  /** The position asked for, if any. */
  get checkpointRequested(): ExtendedSequenceNumber | undefined {
    return this.requested;
  }

  /** The pending checkpoint prepared (and not yet committed or discarded by a checkpoint), if any. */
  get preparedCheckpoint(): ExtendedSequenceNumber | undefined {
    return this.prepared;
  }

  async checkpoint(target?: RecordTarget, subSequenceNumber?: number): Promise<void> {
    const position = this.target(target, subSequenceNumber);
    if (position === undefined) return;
    return this.checkpointAt(position);
  }

  /**
   * Prepares a checkpoint (Java KCL's `prepareCheckpoint`): range-checked like {@link checkpoint}, written as the lease's
   * pending checkpoint, and returned as a {@link PreparedCheckpointer} whose `checkpoint()` commits exactly that
   * position. Preparing does not move the lower bound: a later `checkpoint(...)` (before or after the prepared position)
   * discards it, a later `prepareCheckpoint(...)` replaces it. Preparing the last checkpoint writes nothing (Java KCL's
   * `DoesNothingPreparedCheckpointer`).
   */
  async prepareCheckpoint(target?: RecordTarget, subSequenceNumber?: number): Promise<PreparedCheckpointer> {
    const position = this.target(target, subSequenceNumber) ?? this.requested ?? this.floor;
    if (position === undefined) {
      throw new CheckpointOutOfRangeError(
        this.shardId,
        '(end of batch)',
        formatPosition(this.floor),
        formatPosition(this.lastDelivered),
        'nothing was delivered and nothing checkpointed yet, so there is no position to prepare',
      );
    }
    const lower = this.requested ?? this.floor;
    const pending = positionOf(position);
    if (lower === undefined || comparePositions(pending, lower) !== 0) {
      this.prepared = pending;
      await this.enqueue(this.writers?.prepare, pending);
    }
    return {
      pendingCheckpoint: () => ({ ...pending }),
      checkpoint: async () => {
        if (this.closed) {
          throw new CheckpointOutOfRangeError(
            this.shardId,
            formatPosition(pending),
            formatPosition(this.requested ?? this.floor),
            formatPosition(this.lastDelivered),
            'the call that prepared it has returned; commit it during that call, or in a later call with ' +
              'checkpointer.checkpoint(prepared.pendingCheckpoint())',
          );
        }
        return this.checkpointAt(pending);
      },
    };
  }

  /**
   * The position `checkpoint(...)` / `prepareCheckpoint(...)` asks for, range-checked; undefined for a bare call with
   * nothing new delivered (nothing to do).
   */
  private target(
    target: RecordTarget | undefined,
    subSequenceNumber: number | undefined,
  ): ExtendedSequenceNumber | undefined {
    const lower = this.requested ?? this.floor;
    if (target === undefined) {
      // The last record delivered. With nothing new delivered there is nothing to do.
      if (this.lastDelivered === undefined) return undefined;
      if (lower && comparePositions(this.lastDelivered, lower) <= 0) return undefined;
      return this.lastDelivered;
    }
    const position = this.resolve(target, subSequenceNumber);
    this.checkRange(position);
    return position;
  }

  private checkRange(position: ExtendedSequenceNumber): void {
    const lower = this.requested ?? this.floor;
    const atOrAfterLower = lower === undefined || comparePositions(position, lower) >= 0;
    const withinDelivered = this.lastDelivered !== undefined && comparePositions(position, this.lastDelivered) <= 0;
    // The last checkpoint itself is in range (a no-op), even when nothing new was delivered.
    const isLower = lower !== undefined && comparePositions(position, lower) === 0;
    if (!atOrAfterLower || (!withinDelivered && !isLower)) {
      throw new CheckpointOutOfRangeError(
        this.shardId,
        formatPosition(position),
        formatPosition(lower),
        formatPosition(this.lastDelivered),
      );
    }
  }

  /** Checkpoints at a range-checked position; the last checkpoint (or the position already asked for) is a no-op. */
  private async checkpointAt(position: ExtendedSequenceNumber): Promise<void> {
    this.checkRange(position);
    const lower = this.requested ?? this.floor;
    if (lower && comparePositions(position, lower) === 0) return;
    return this.record(position);
  }

  private resolve(target: RecordTarget, subSequenceNumber: number | undefined): ExtendedSequenceNumber {
    const sequenceNumber = typeof target === 'string' ? target : target?.sequenceNumber;
    const sub = typeof target === 'string' ? subSequenceNumber : target?.subSequenceNumber;
    if (typeof sequenceNumber !== 'string' || !isSequenceNumber(sequenceNumber)) {
      throw new CheckpointOutOfRangeError(
        this.shardId,
        String(sequenceNumber),
        formatPosition(this.floor),
        formatPosition(this.lastDelivered),
        'it is not a sequence number',
      );
    }
    if (sub !== undefined && (!Number.isInteger(sub) || sub < 0)) {
      throw new CheckpointOutOfRangeError(
        this.shardId,
        `${sequenceNumber}/${sub}`,
        formatPosition(this.floor),
        formatPosition(this.lastDelivered),
        'the sub-sequence number must be a whole number >= 0',
      );
    }
    if (sub !== undefined || typeof target !== 'string') {
      return sub === undefined ? { sequenceNumber } : { sequenceNumber, subSequenceNumber: sub };
    }
    // checkpoint(sequenceNumber) of an aggregate: the whole Kinesis record, i.e. its last user record delivered.
    let last: ExtendedSequenceNumber | undefined;
    for (const record of this.records) {
      if (record.sequenceNumber === sequenceNumber) last = record;
    }
    return last?.subSequenceNumber === undefined
      ? { sequenceNumber }
      : { sequenceNumber, subSequenceNumber: last.subSequenceNumber };
  }
}

import { CheckpointOutOfRangeError } from '../errors';
import {
  type Checkpoint,
  comparePositions,
  type ExtendedSequenceNumber,
  formatPosition,
  isSequenceNumber,
} from '../positions';
import type { Checkpointer, KinesisRecord } from '../record-processor';

/** Makes a checkpoint durable (a fenced write to the lease table); rejects if it cannot. */
export type CheckpointWriter = (position: ExtendedSequenceNumber) => Promise<void>;

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
    private readonly writer?: CheckpointWriter,
  ) {
    this.floor = typeof lastCheckpoint === 'object' ? lastCheckpoint : undefined;
  }

  /** The error of the first write that failed, if any (the processor may have caught it). */
  get writeFailure(): unknown {
    return this.failure;
  }

  /** Waits for writes still under way (a processor may call `checkpoint()` without awaiting it). */
  async settled(): Promise<void> {
    await this.tail.catch(() => undefined);
  }

  private record(position: ExtendedSequenceNumber): Promise<void> {
    this.requested = position;
    const writer = this.writer;
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

  async checkpoint(
    target?: string | Pick<KinesisRecord, 'sequenceNumber' | 'subSequenceNumber'>,
    subSequenceNumber?: number,
  ): Promise<void> {
    const lower = this.requested ?? this.floor;
    if (target === undefined) {
      // checkpoint(): the last record delivered. With nothing new delivered it has nothing to do.
      if (this.lastDelivered === undefined) return;
      if (lower && comparePositions(this.lastDelivered, lower) <= 0) return;
      return this.record(this.lastDelivered);
    }
    const position = this.resolve(target, subSequenceNumber);
    // The last checkpoint (or the position already asked for) again: accepted, nothing to write, as in Java KCL.
    if (lower && comparePositions(position, lower) === 0) return;
    const afterLower = lower === undefined || comparePositions(position, lower) > 0;
    const withinDelivered = this.lastDelivered !== undefined && comparePositions(position, this.lastDelivered) <= 0;
    if (!afterLower || !withinDelivered) {
      throw new CheckpointOutOfRangeError(
        this.shardId,
        formatPosition(position),
        formatPosition(lower),
        formatPosition(this.lastDelivered),
      );
    }
    return this.record(position);
  }

  private resolve(
    target: string | Pick<KinesisRecord, 'sequenceNumber' | 'subSequenceNumber'>,
    subSequenceNumber: number | undefined,
  ): ExtendedSequenceNumber {
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

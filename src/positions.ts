/**
 * Positions in a shard: sequence numbers, KPL sub-sequence numbers and KCL's special checkpoint values.
 *
 * Pure module (no Node, no AWS SDK): workflows import it. Sequence numbers are decimal strings of up to 128 bits, so
 * they are compared as BigInt, never as JavaScript numbers or as strings.
 */

/** The special values KCL stores in the lease table's `checkpoint` attribute instead of a sequence number. */
export const SentinelCheckpoint = {
  TRIM_HORIZON: 'TRIM_HORIZON',
  LATEST: 'LATEST',
  AT_TIMESTAMP: 'AT_TIMESTAMP',
  /** The shard is closed and every record in it was processed: children may start. */
  SHARD_END: 'SHARD_END',
} as const;
export type SentinelCheckpoint = (typeof SentinelCheckpoint)[keyof typeof SentinelCheckpoint];

/**
 * A position of one user record: the Kinesis record's sequence number and, for a user record out of a KPL aggregate,
 * its index inside the aggregate. KCL's `ExtendedSequenceNumber`.
 */
export interface ExtendedSequenceNumber {
  sequenceNumber: string;
  /** Index of the user record inside a KPL aggregate; absent (treated as 0) for a plain record. */
  subSequenceNumber?: number;
}

/** The position of a record (anything with a sequence number and maybe a sub-sequence number), and nothing else of it. */
export function positionOf(record: ExtendedSequenceNumber): ExtendedSequenceNumber {
  return record.subSequenceNumber === undefined
    ? { sequenceNumber: record.sequenceNumber }
    : { sequenceNumber: record.sequenceNumber, subSequenceNumber: record.subSequenceNumber };
}

/** What the lease table's `checkpoint` holds: a position, a sentinel, or nothing yet. */
export type Checkpoint = ExtendedSequenceNumber | SentinelCheckpoint;

const SEQUENCE_NUMBER = /^\d{1,128}$/;

/** True for a decimal sequence number as Kinesis issues them. */
export function isSequenceNumber(value: string): boolean {
  return SEQUENCE_NUMBER.test(value);
}

export function isSentinel(value: unknown): value is SentinelCheckpoint {
  return typeof value === 'string' && Object.values(SentinelCheckpoint).includes(value as SentinelCheckpoint);
}

/** Compares two sequence numbers numerically: negative, zero or positive. */
export function compareSequenceNumbers(a: string, b: string): number {
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** Compares two extended sequence numbers: by sequence number, then sub-sequence number (absent = 0). */
export function comparePositions(a: ExtendedSequenceNumber, b: ExtendedSequenceNumber): number {
  return (
    compareSequenceNumbers(a.sequenceNumber, b.sequenceNumber) ||
    (a.subSequenceNumber ?? 0) - (b.subSequenceNumber ?? 0)
  );
}

/** `seq` or `seq/sub`, for messages and progress. */
export function formatPosition(position: Checkpoint | undefined): string {
  if (position === undefined) return '-';
  if (typeof position === 'string') return position;
  return position.subSequenceNumber === undefined
    ? position.sequenceNumber
    : `${position.sequenceNumber}/${position.subSequenceNumber}`;
}

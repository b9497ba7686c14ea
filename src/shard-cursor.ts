/**
 * The shard consumer's cursor: everything a run hands to the next through continue-as-new, as plain JSON, and the pure
 * rules that move it. Pure module: the workflow moves it batch by batch (per-batch), a window on the worker moves the
 * reading part of it (windowed), by the same rules.
 */
import type {
  BatchSummary,
  ConsumerCounters,
  DeadLetterReport,
  DeaggregationFailureReport,
  HashKeyRange,
  MoveShard,
  ResumePosition,
} from './consumer-types';
import { type Checkpoint, compareSequenceNumbers, type ExtendedSequenceNumber, SentinelCheckpoint } from './positions';
import type { ResolvedShardConsumerOptions } from './options';

/** The worker a shard is pinned to: its processor instance and its batches live there. */
export interface Pin {
  id: string;
  workerQueue: string;
}

export interface ShardCursor {
  /** This consumer's lease owner id and the counter it holds (fencing). */
  owner: string;
  counter: number;
  parentShardIds: string[];
  hashKeyRange?: HashKeyRange;
  /** Where this consumer first started reading when nothing was checkpointed (LATEST is resolved to a timestamp). */
  origin: ResumePosition;
  /** What the processor is told in `initialize`. */
  startingPosition: Checkpoint;
  /** The durable checkpoint. */
  checkpoint?: Checkpoint;
  /** The last user record delivered and processed. */
  lastProcessed?: ExtendedSequenceNumber;
  /** Where a fresh iterator starts. */
  resumeFrom: ResumePosition;
  /** Records at or before this position are dropped (resuming after a sub-sequence checkpoint). */
  skipUntil?: ExtendedSequenceNumber;
  /** Iterator for the first record not yet processed (it may expire). */
  iterator?: string;
  pin?: Pin;
  /** A planned move not acted on yet when the run continued as new (the `moveShard` signal's last value). */
  move?: MoveShard;
  /** Pins so far (the next pin's id is derived from it). */
  pins: number;
  millisBehindLatest?: number;
  counters: ConsumerCounters;
  recentDeaggregationFailures: DeaggregationFailureReport[];
  recentDeadLetters: DeadLetterReport[];
  /** Number of this run in the continue-as-new chain. */
  run: number;
  /**
   * The lease must be renewed before the next write: the worker the shard left may have written checkpoints the
   * workflow never heard of (the counter it knows may be stale, the checkpoint it knows may be behind).
   */
  renewLease?: boolean;
  /** Windows started so far (windowed; each window's id is derived from it). */
  windows?: number;
  /** Reads in a row that found the shard quiet: the next idle wait doubles with each (see maxIdleWaitMs). */
  quietReads?: number;
}

/** The part of the cursor that reading and processing move: what a window carries to the worker and back. */
export type ReadCursor = Pick<
  ShardCursor,
  | 'resumeFrom'
  | 'skipUntil'
  | 'lastProcessed'
  | 'iterator'
  | 'millisBehindLatest'
  | 'counters'
  | 'recentDeaggregationFailures'
  | 'checkpoint'
>;

/** The read cursor of a shard cursor (a copy). */
export function readCursorOf(cursor: ReadCursor): ReadCursor {
  return {
    resumeFrom: cursor.resumeFrom,
    ...(cursor.skipUntil ? { skipUntil: cursor.skipUntil } : {}),
    ...(cursor.lastProcessed ? { lastProcessed: cursor.lastProcessed } : {}),
    ...(cursor.iterator !== undefined ? { iterator: cursor.iterator } : {}),
    ...(cursor.millisBehindLatest !== undefined ? { millisBehindLatest: cursor.millisBehindLatest } : {}),
    ...(cursor.checkpoint !== undefined ? { checkpoint: cursor.checkpoint } : {}),
    counters: { ...cursor.counters },
    recentDeaggregationFailures: [...cursor.recentDeaggregationFailures],
  };
}

export function emptyCounters(): ConsumerCounters {
  return {
    recordsProcessed: 0,
    bytesProcessed: 0,
    batches: 0,
    emptyBatches: 0,
    deaggregationFailures: 0,
    droppedOutOfRange: 0,
    deadLetteredRecords: 0,
    deadLetteredBatches: 0,
    checkpoints: 0,
    expiredIterators: 0,
    workerMoves: 0,
  };
}

/**
 * Where a consumer starts: after the checkpoint (a sub-sequence checkpoint resumes AT_SEQUENCE_NUMBER and skips the user
 * records already checkpointed, as Java KCL does); at a sentinel checkpoint; or, without one, at TRIM_HORIZON for a
 * child shard of a reshard and at the configured initial position otherwise.
 */
export function startPosition(
  checkpoint: Checkpoint | undefined,
  isChildShard: boolean,
  options: Pick<ResolvedShardConsumerOptions, 'initialPosition' | 'initialPositionTimestamp'>,
):
  | { resumeFrom: ResumePosition; skipUntil?: ExtendedSequenceNumber; startingPosition: Checkpoint }
  | { invalid: string } {
  if (typeof checkpoint === 'object') {
    return {
      resumeFrom: { type: 'AT_SEQUENCE_NUMBER', sequenceNumber: checkpoint.sequenceNumber },
      skipUntil: { sequenceNumber: checkpoint.sequenceNumber, subSequenceNumber: checkpoint.subSequenceNumber ?? 0 },
      startingPosition: checkpoint,
    };
  }
  const initial = checkpoint ?? (isChildShard ? SentinelCheckpoint.TRIM_HORIZON : options.initialPosition);
  switch (initial) {
    case SentinelCheckpoint.TRIM_HORIZON:
    case SentinelCheckpoint.LATEST:
      return { resumeFrom: { type: initial }, startingPosition: initial };
    case SentinelCheckpoint.AT_TIMESTAMP:
      if (!options.initialPositionTimestamp) {
        return { invalid: 'the lease table says AT_TIMESTAMP but no initialPositionTimestamp is configured' };
      }
      return {
        resumeFrom: { type: 'AT_TIMESTAMP', timestamp: options.initialPositionTimestamp },
        startingPosition: SentinelCheckpoint.AT_TIMESTAMP,
      };
    case SentinelCheckpoint.SHARD_END:
      return { invalid: 'the shard is already at SHARD_END' };
  }
}

/** Where a new processor instance resumes: from the durable checkpoint (what was not checkpointed is delivered again). */
export function resumeFromCheckpoint(
  cursor: ShardCursor,
): Pick<ShardCursor, 'resumeFrom' | 'skipUntil' | 'lastProcessed'> {
  if (typeof cursor.checkpoint === 'object') {
    const { sequenceNumber, subSequenceNumber } = cursor.checkpoint;
    return {
      resumeFrom: { type: 'AT_SEQUENCE_NUMBER', sequenceNumber },
      skipUntil: { sequenceNumber, subSequenceNumber: subSequenceNumber ?? 0 },
      lastProcessed: cursor.checkpoint,
    };
  }
  return { resumeFrom: cursor.origin, skipUntil: undefined, lastProcessed: undefined };
}

/** The skip position still relevant for the read after `batch` (none once reading has passed it). */
export function skipAfter(
  skipUntil: ExtendedSequenceNumber | undefined,
  batch: BatchSummary,
): ExtendedSequenceNumber | undefined {
  if (!skipUntil || batch.lastSequenceNumber === undefined) return skipUntil;
  return compareSequenceNumbers(batch.lastSequenceNumber, skipUntil.sequenceNumber) >= 0 ? undefined : skipUntil;
}

const RECENT = 10;

/** Moves the cursor past a processed batch; records it dead-lettered are not counted as processed. */
export function advance(
  cursor: ReadCursor,
  batch: BatchSummary,
  deadLettered: { records: number; bytes: number } = { records: 0, bytes: 0 },
): void {
  cursor.skipUntil = skipAfter(cursor.skipUntil, batch);
  if (batch.lastSequenceNumber !== undefined) {
    cursor.resumeFrom = { type: 'AFTER_SEQUENCE_NUMBER', sequenceNumber: batch.lastSequenceNumber };
  }
  if (batch.lastDelivered) cursor.lastProcessed = batch.lastDelivered;
  cursor.iterator = batch.nextIterator;
  cursor.millisBehindLatest = batch.millisBehindLatest;
  const counters = cursor.counters;
  counters.batches++;
  if (batch.kinesisRecordCount === 0) counters.emptyBatches++;
  counters.recordsProcessed += batch.recordCount - deadLettered.records;
  counters.bytesProcessed += batch.bytes - deadLettered.bytes;
  counters.deaggregationFailures += batch.deaggregationFailureCount;
  counters.droppedOutOfRange += batch.droppedOutOfRange;
  if (batch.deaggregationFailures.length > 0) {
    cursor.recentDeaggregationFailures = [...cursor.recentDeaggregationFailures, ...batch.deaggregationFailures].slice(
      -RECENT,
    );
  }
}

/** Keeps the last few dead-letter reports. */
export function recordDeadLetter(cursor: ShardCursor, report: DeadLetterReport): void {
  cursor.recentDeadLetters = [...cursor.recentDeadLetters, report].slice(-RECENT);
}

/**
 * Takes a fresh iterator taken at the cursor's `resumeFrom`. LATEST is pinned to the time it was taken, so a later
 * re-read skips nothing.
 */
export function adoptIterator(cursor: ShardCursor, fresh: { iterator: string; obtainedAt: string }): void {
  cursor.iterator = fresh.iterator;
  if (cursor.resumeFrom.type === 'LATEST') {
    cursor.resumeFrom = { type: 'AT_TIMESTAMP', timestamp: fresh.obtainedAt };
    if (cursor.origin.type === 'LATEST') cursor.origin = cursor.resumeFrom;
  }
}

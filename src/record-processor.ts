/**
 * The record processor contract: what a temporal-kcl user implements, one instance per shard, as in the Kinesis Client
 * Library (`initialize` → `processRecords`* → `shutdown`).
 *
 * Pure types: workflows may import them.
 */
import type { Checkpoint, ExtendedSequenceNumber } from './positions';

/** One user record: a plain Kinesis record, or one user record out of a KPL aggregate. */
export interface KinesisRecord {
  /** Sequence number of the Kinesis record that carried this user record. */
  sequenceNumber: string;
  /** Index of this user record inside its KPL aggregate; absent for a record that was not aggregated. */
  subSequenceNumber?: number;
  partitionKey: string;
  /** The explicit hash key the producer set, if any. */
  explicitHashKey?: string;
  data: Uint8Array;
  /** When Kinesis accepted the carrying record. */
  approximateArrivalTimestamp: Date;
}

/**
 * Records the position up to which a shard has been processed. `checkpoint(...)` resolves once the checkpoint is durable
 * in the lease table (a write fenced on the lease, DynamoDB faults retried inside the call), as Java KCL's checkpointer
 * returns once it is written; it rejects with a `CheckpointConflictError` when this consumer lost the lease (another
 * owner took the shard: stop checkpointing, the batch will be delivered to the new owner). A worker killed after
 * `checkpoint()` resolved resumes after that position.
 *
 * A position must lie after the last checkpoint and at or before the last record delivered so far (the last checkpoint
 * itself is accepted and changes nothing, as in Java KCL); anything else is
 * rejected with a `CheckpointOutOfRangeError` (and nothing is written).
 *
 * `prepareCheckpoint(...)` is the first phase of a two-phase checkpoint (Java KCL's): it records the position as the
 * lease's pending checkpoint (`pendingCheckpoint`) without moving the checkpoint, and returns a {@link PreparedCheckpointer}
 * whose `checkpoint()` commits it. A plain `checkpoint(...)` also clears a pending checkpoint. A processor that starts
 * after a failover is told the pending checkpoint in `initialize` ({@link InitializeInput.pendingCheckpoint}).
 *
 * Use the checkpointer (and the prepared checkpointers it returns) during the call that received it.
 */
export interface Checkpointer {
  /** Checkpoint the end of the batch being processed (the last record delivered). */
  checkpoint(): Promise<void>;
  /** Checkpoint at this record: it and everything before it are done. */
  checkpoint(record: Pick<KinesisRecord, 'sequenceNumber' | 'subSequenceNumber'>): Promise<void>;
  /**
   * Checkpoint at a sequence number; with a sub-sequence number, at that user record of an aggregate. Without one, at the
   * whole Kinesis record (every user record it carried that was delivered).
   */
  checkpoint(sequenceNumber: string, subSequenceNumber?: number): Promise<void>;

  /**
   * Prepares a checkpoint at the end of the batch being processed (the last record delivered). Resolves once the pending
   * checkpoint is durable; range-checked like `checkpoint()`. With nothing new delivered since the last checkpoint, it
   * writes nothing and the prepared checkpointer's `checkpoint()` does nothing.
   */
  prepareCheckpoint(): Promise<PreparedCheckpointer>;
  /** Prepares a checkpoint at this record. */
  prepareCheckpoint(record: Pick<KinesisRecord, 'sequenceNumber' | 'subSequenceNumber'>): Promise<PreparedCheckpointer>;
  /** Prepares a checkpoint at a sequence number (and sub-sequence number), as `checkpoint(sequenceNumber, sub)`. */
  prepareCheckpoint(sequenceNumber: string, subSequenceNumber?: number): Promise<PreparedCheckpointer>;
}

/**
 * A checkpoint prepared with `prepareCheckpoint(...)` and durable as the lease's pending checkpoint (Java KCL's
 * `PreparedCheckpointer`).
 */
export interface PreparedCheckpointer {
  /** The position the pending checkpoint is at. */
  pendingCheckpoint(): ExtendedSequenceNumber;
  /**
   * Commits it: the checkpoint becomes the pending position and the pending attributes are removed. Resolves once that is
   * durable; subject to the same range check as `checkpoint(...)` (it fails if a later checkpoint moved past it).
   * Commit it during the call that prepared it: afterwards it is refused (`CheckpointOutOfRangeError`); a later call
   * commits the position with `checkpointer.checkpoint(prepared.pendingCheckpoint())`.
   */
  checkpoint(): Promise<void>;
}

/** Where a shard's processing starts, as passed to `initialize`. */
export interface InitializeInput {
  shardId: string;
  streamName: string;
  /** The checkpoint processing resumes after, or the initial position (TRIM_HORIZON, LATEST, AT_TIMESTAMP) when there is none. */
  startingPosition: Checkpoint;
  /**
   * A checkpoint the lease holds as prepared but never committed (`pendingCheckpoint`; Java KCL's
   * `InitializationInput.pendingCheckpointSequenceNumber`): an earlier processor of this shard prepared it, then lost
   * the shard (its worker died) before committing. Processing still resumes after `startingPosition`; the records up to
   * the pending position are delivered again, and the processor may finish its two-phase commit, e.g. by checking
   * whether its side effect at that position was applied and then checkpointing there. Absent when none is pending.
   */
  pendingCheckpoint?: Checkpoint;
}

export interface ProcessRecordsInput {
  /** User records in shard order; KPL aggregates already de-aggregated. May be empty if `callProcessRecordsEvenForEmptyRecordList`. */
  records: KinesisRecord[];
  /** How far the shard's consumer is behind the tip of the shard, as Kinesis reported with this batch. */
  millisBehindLatest: number;
  checkpointer: Checkpointer;
  /** When the batch was read from Kinesis (entered the cache). */
  cacheEntryTime: Date;
  /** When the batch was handed to the processor (left the cache). */
  cacheExitTime: Date;
}

/** Why a processor is being shut down. */
export const ShutdownReason = {
  /** The shard ended (it was split or merged) and every record was delivered: checkpoint now to let its children start. */
  TERMINATE: 'TERMINATE',
  /** A stop was requested: checkpoint what is done. */
  REQUESTED: 'REQUESTED',
  /** This processor no longer owns the shard (another owner took it, or it moved to another worker): do not checkpoint. */
  ZOMBIE: 'ZOMBIE',
} as const;
export type ShutdownReason = (typeof ShutdownReason)[keyof typeof ShutdownReason];

export type ShutdownInput =
  | { reason: typeof ShutdownReason.TERMINATE | typeof ShutdownReason.REQUESTED; checkpointer: Checkpointer }
  | { reason: typeof ShutdownReason.ZOMBIE; checkpointer?: undefined };

/** A KCL record processor: one instance per shard. */
export interface RecordProcessor {
  /** Called once before the first batch. */
  initialize?(input: InitializeInput): Promise<void> | void;
  /**
   * Called with each batch, in shard order. Throwing fails the batch: it is retried by policy, never skipped, and after
   * the configured attempts dead-lettered or the shard halts (see the failure options).
   */
  processRecords(input: ProcessRecordsInput): Promise<void> | void;
  /** Called once at the end; see {@link ShutdownReason}. */
  shutdown?(input: ShutdownInput): Promise<void> | void;
}

/** What a processor factory is told about the shard it makes a processor for. */
export interface ProcessorContext {
  applicationName: string;
  streamName: string;
  shardId: string;
}

/** Makes one record processor per shard. */
export type RecordProcessorFactory = (context: ProcessorContext) => RecordProcessor | Promise<RecordProcessor>;

/** Position helpers re-exported for processor authors. */
export type { Checkpoint, ExtendedSequenceNumber };

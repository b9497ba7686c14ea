/**
 * The plain-JSON shapes shard consumers and their activities exchange. Everything here travels through Temporal
 * history, so nothing here carries record data: only counts, positions and handles.
 *
 * Pure types: workflows import them.
 */
import type { Checkpoint, ExtendedSequenceNumber } from './positions';

/** Which shard of which stream, for which application. */
export interface ShardRef {
  applicationName: string;
  streamName: string;
  shardId: string;
  /**
   * Set when the lease table is a multi-stream one: the stream identifier `<account>:<stream>:<creation epoch>` that
   * prefixes the shard's lease key (Java KCL's multi-stream layout). Absent: lease key = shard id.
   */
  streamIdentifier?: string;
}

/**
 * The enhanced fan-out consumer a shard is read through (`retrieval: 'fan-out'`): registered on the stream with
 * RegisterStreamConsumer, and ACTIVE.
 */
export interface FanOutConsumer {
  consumerName: string;
  consumerArn: string;
}

/** An inclusive range of 128-bit hash keys, as decimal strings (as ListShards returns it). */
export interface HashKeyRange {
  startingHashKey: string;
  endingHashKey: string;
}

/** A shard as ListShards describes it. */
export interface ShardDescription {
  shardId: string;
  parentShardIds: string[];
  hashKeyRange: HashKeyRange;
  /** Set once the shard is closed (split or merged): its last sequence number. */
  endingSequenceNumber?: string;
}

/** A child shard Kinesis reported when a shard ended. */
export interface ChildShard {
  shardId: string;
  parentShardIds: string[];
  hashKeyRange?: HashKeyRange;
}

/** How to obtain a fresh shard iterator: where reading resumes. */
export type ResumePosition =
  | { type: 'TRIM_HORIZON' }
  | { type: 'LATEST' }
  | { type: 'AT_TIMESTAMP'; timestamp: string }
  | { type: 'AT_SEQUENCE_NUMBER'; sequenceNumber: string }
  | { type: 'AFTER_SEQUENCE_NUMBER'; sequenceNumber: string };

/** A record that could not be de-aggregated: skipped, counted and reported, never blocking the shard. */
export interface DeaggregationFailureReport {
  sequenceNumber: string;
  error: string;
}

/** What a read returns to the workflow: metadata and a handle to the records kept in the reading worker's memory. */
export interface BatchSummary {
  /** Key of the batch in the reading worker's cache. */
  handle: string;
  /** User records delivered (after de-aggregation and filtering). */
  recordCount: number;
  /** Kinesis records returned by GetRecords (before de-aggregation). */
  kinesisRecordCount: number;
  /** Bytes of user-record data delivered. */
  bytes: number;
  /** Sequence number of the last Kinesis record read; reading resumes after it. */
  lastSequenceNumber?: string;
  /** Position of the last user record delivered. */
  lastDelivered?: ExtendedSequenceNumber;
  millisBehindLatest: number;
  /** Absent when the shard has ended (it was split or merged and every record has been read). */
  nextIterator?: string;
  /** The shard's children, when it has ended and Kinesis reported them. */
  childShards?: ChildShard[];
  /** Aggregates that could not be de-aggregated (at most the first few; `deaggregationFailureCount` has them all). */
  deaggregationFailures: DeaggregationFailureReport[];
  deaggregationFailureCount: number;
  /** User records of aggregates dropped because they hash outside this shard's range (after resharding). */
  droppedOutOfRange: number;
  /** User records dropped because they were at or before a sub-sequence checkpoint. */
  droppedCheckpointed: number;
  /** Epoch ms when the GetRecords call started (the batch's cache entry time). */
  readAt: number;
}

/**
 * The lease a consumer holds, as activities that write checkpoints on the shard's worker get it: they write fenced on
 * owner and counter, and report the counter they reached.
 */
export interface LeaseRef {
  tableName: string;
  owner: string;
  /** The newest counter the workflow knows. */
  counter: number;
  /** Renew first (owner-conditioned): a worker that is gone may have written checkpoints the workflow never heard of. */
  renew?: boolean;
}

/** The lease after activities on the shard's worker wrote to it. */
export interface LeaseState {
  counter: number;
  /** The durable checkpoint, when the activity wrote one or renewed the lease. */
  checkpoint?: Checkpoint;
}

/** What a `processRecords` call reports. */
export interface ProcessOutcome {
  /** The last checkpoint the processor wrote (durable: `checkpoint()` resolved once it was written). */
  checkpoint?: ExtendedSequenceNumber;
  /** Checkpoints written during the call. */
  checkpoints?: number;
  /** The lease counter after the call's writes. */
  counter?: number;
  durationMs: number;
}

/** What `shutdown` wrote (durable), and the lease counter after it. */
export interface ShutdownOutcome {
  checkpoint?: ExtendedSequenceNumber;
  counter?: number;
}

/** State of a parent shard, as a child waits for it. */
export type ParentState = 'ENDED' | 'IN_PROGRESS' | 'NOT_STARTED' | 'AGED_OUT';

export interface ParentStatus {
  shardId: string;
  state: ParentState;
  checkpoint?: Checkpoint;
}

/** Lifecycle of a shard consumer, as the progress query and the UI show it. */
export const ConsumerState = {
  WAITING_ON_PARENT: 'WAITING_ON_PARENT',
  INITIALIZING: 'INITIALIZING',
  PROCESSING: 'PROCESSING',
  /** No worker has room for the shard (every live worker is at its `maxShardsPerWorker`): it waits for capacity. */
  WAITING_FOR_WORKER: 'WAITING_FOR_WORKER',
  HALTED: 'HALTED',
  SHUTTING_DOWN: 'SHUTTING_DOWN',
  ENDED: 'ENDED',
} as const;
export type ConsumerState = (typeof ConsumerState)[keyof typeof ConsumerState];

/** Running totals a consumer keeps across continue-as-new. */
export interface ConsumerCounters {
  recordsProcessed: number;
  bytesProcessed: number;
  batches: number;
  emptyBatches: number;
  deaggregationFailures: number;
  droppedOutOfRange: number;
  deadLetteredRecords: number;
  deadLetteredBatches: number;
  checkpoints: number;
  expiredIterators: number;
  workerMoves: number;
  /** Planned moves to another worker (balance, capacity, a draining worker): graceful, no record delivered twice. */
  handoffs?: number;
}

/** A dead-lettered position, as progress reports it. */
export interface DeadLetterReport {
  first: ExtendedSequenceNumber;
  last: ExtendedSequenceNumber;
  records: number;
  error: string;
}

/** The `progress` query's answer. */
export interface ShardProgress extends ShardRef {
  state: ConsumerState;
  parentShardIds: string[];
  checkpoint?: Checkpoint;
  lastProcessed?: ExtendedSequenceNumber;
  millisBehindLatest?: number;
  counters: ConsumerCounters;
  /** The most recent de-aggregation failures (sequence numbers of skipped aggregates). */
  recentDeaggregationFailures: DeaggregationFailureReport[];
  /** The most recent dead-lettered positions. */
  recentDeadLetters: DeadLetterReport[];
  /** Task queue of the worker that holds this shard's processor, if any. */
  worker?: string;
  /** Why the consumer is halted, when it is. */
  haltedReason?: string;
  /** Run of the continue-as-new chain (1 for the first). */
  run: number;
  /** How the consumer runs its batches. */
  execution?: 'per-batch' | 'windowed';
}

/** How a shard consumer ended. */
export interface ShardConsumerResult extends ShardRef {
  reason: 'TERMINATE' | 'REQUESTED' | 'ZOMBIE' | 'ALREADY_ENDED';
  checkpoint?: Checkpoint;
  lastProcessed?: ExtendedSequenceNumber;
  counters: ConsumerCounters;
  childShards: ChildShard[];
}

/** Where records go that processing gave up on (`onProcessingFailure: 'DEAD_LETTER'`). */
export type DeadLetterDestination =
  /** A handler registered on the workers by name: `createKclWorker({ deadLetterHandlers: { [name]: handler } })`. */
  | { type: 'CALLBACK'; name: string }
  /** A DynamoDB table (hash key `id`), created on demand; one item per record. */
  | { type: 'DYNAMODB'; tableName: string }
  /** A Kinesis stream; one JSON envelope per record (metadata, error, data in base64). */
  | { type: 'KINESIS'; streamName: string };

/** Why the stream consumer moves a shard to another worker (logged, and shown in the shard's details). */
export type MoveReason = 'BALANCE' | 'JOIN' | 'CAPACITY' | 'DRAIN';

/**
 * A planned move of a shard (the `moveShard` signal): the shard consumer hands the shard over at its next batch
 * boundary (the processor gets `shutdown(REQUESTED)` with a working checkpointer, then the target initializes at that
 * checkpoint). The highest `seq` wins.
 */
export interface MoveShard {
  /** The target worker's own task queue (`<taskQueue>@<identity>`); absent: leave the current worker for any other. */
  to?: string;
  reason: MoveReason;
  /** Increases with every move the coordinator sends; an older one arriving late is ignored. */
  seq: number;
}

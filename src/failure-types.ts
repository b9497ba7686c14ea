/**
 * The `type` of every ApplicationFailure temporal-kcl's activities raise. Retry policies list the non-retryable ones and
 * workflows branch on them. Library errors (src/errors.ts) use the same names. Pure module: workflows import it.
 */
export const FailureType = {
  /** The shard iterator expired: get a new one from the last processed record. */
  ExpiredIterator: 'ExpiredIterator',
  /** Kinesis or KMS throttled the call: retried with backoff by the activity retry policy. */
  Throttled: 'Throttled',
  /** The stream does not exist (or was deleted). */
  StreamNotFound: 'StreamNotFound',
  /** The shard is not in the stream (it aged out, or the id is wrong). */
  ShardNotFound: 'ShardNotFound',
  /** Kinesis rejected an argument. */
  InvalidArgument: 'InvalidArgument',
  /** AWS refused the credentials or a KMS key: retried (slowly) so an operator can fix permissions without a restart. */
  AccessDenied: 'AccessDenied',
  /** Invalid options or input. */
  InvalidConfig: 'InvalidConfig',
  /** The lease is held by someone else, or this attempt is stale: the consumer has lost the shard. */
  CheckpointConflict: 'CheckpointConflict',
  /** The lease table has the wrong key schema or holds an unreadable item. */
  LeaseTableSchema: 'LeaseTableSchema',
  /** A lease-table request was malformed (a bug). */
  InvalidLeaseRequest: 'InvalidLeaseRequest',
  /** The worker holding the batch no longer has it (evicted from memory): read again from the last processed record. */
  BatchLost: 'BatchLost',
  /** The worker no longer holds this shard's processor (restarted, or the shard moved): pin the shard again. */
  ProcessorLost: 'ProcessorLost',
  /** The worker is shutting down: pin the shard to another worker. */
  WorkerDraining: 'WorkerDraining',
  /** The worker is shutting down and cannot take a shard: retried, so another worker takes the task. */
  WorkerStopping: 'WorkerStopping',
  /**
   * The worker holds `maxShardsPerWorker` shards already and takes no more: the shard is placed on another worker, or
   * waits (WAITING_FOR_WORKER) until one has room.
   */
  WorkerFull: 'WorkerFull',
  /** No processor factory with that name is registered on the worker. */
  ProcessorNotRegistered: 'ProcessorNotRegistered',
  /** The user's processor threw. */
  ProcessorFailed: 'ProcessorFailed',
  /** A checkpoint asked for a position outside (last checkpoint, last delivered record]. */
  CheckpointOutOfRange: 'CheckpointOutOfRange',
  /** Delivering records to the dead-letter destination failed. */
  DeadLetterFailed: 'DeadLetterFailed',
} as const;
export type FailureType = (typeof FailureType)[keyof typeof FailureType];

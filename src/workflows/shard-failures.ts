/**
 * What an activity failure means to the shard consumer, decided in one place: the failure type an activity raised, or
 * which timeout Temporal recorded (a processing call that ran out of time is a processing failure; a read or a window
 * that did is a worker that is gone).
 */
import { ActivityFailure, ApplicationFailure, TimeoutFailure } from '@temporalio/workflow';
import { FailureType } from '../failure-types';

export const Failure = {
  /** The pinned worker is gone or leaving: pin the shard elsewhere (it resumes from the durable checkpoint). */
  WORKER_LOST: 'WORKER_LOST',
  /**
   * The pinned worker is stopping gracefully: hand the shard over (its processor gets `shutdown(REQUESTED)` there, with
   * a working checkpointer).
   */
  DRAINING: 'DRAINING',
  /** The processor kept failing (or ran out of time) on a batch: HALT or dead-letter. */
  PROCESSING_FAILED: 'PROCESSING_FAILED',
  /** The batch is no longer in the worker's memory: read it again. */
  BATCH_LOST: 'BATCH_LOST',
  /** The shard iterator expired: get a new one after the last processed record. */
  EXPIRED_ITERATOR: 'EXPIRED_ITERATOR',
  /** Another owner holds the lease: end as a zombie. */
  LEASE_LOST: 'LEASE_LOST',
  /** Anything else: the workflow fails with it. */
  OTHER: 'OTHER',
} as const;
export type Failure = (typeof Failure)[keyof typeof Failure];

/** What kind of call failed: the meaning of a start-to-close timeout depends on it. */
export type CallKind = 'read' | 'window' | 'process' | 'shutdown' | 'control';

/** The failure behind an activity's error: an ActivityFailure's cause, or the error itself for a local activity. */
export function activityCause(error: unknown): unknown {
  return error instanceof ActivityFailure ? error.cause : error;
}

export function classify(error: unknown, kind: CallKind): Failure {
  const cause = activityCause(error);
  if (cause instanceof TimeoutFailure) {
    if (cause.timeoutType === 'START_TO_CLOSE' && kind === 'process') return Failure.PROCESSING_FAILED;
    return kind === 'control' ? Failure.OTHER : Failure.WORKER_LOST;
  }
  if (!(cause instanceof ApplicationFailure)) return Failure.OTHER;
  switch (cause.type) {
    case FailureType.ExpiredIterator:
      return Failure.EXPIRED_ITERATOR;
    case FailureType.BatchLost:
      return Failure.BATCH_LOST;
    case FailureType.ProcessorLost:
      return Failure.WORKER_LOST;
    case FailureType.WorkerDraining:
      return Failure.DRAINING;
    case FailureType.CheckpointConflict:
      return Failure.LEASE_LOST;
    case FailureType.ProcessorFailed:
    case FailureType.CheckpointOutOfRange:
      return Failure.PROCESSING_FAILED;
    default:
      return Failure.OTHER;
  }
}

/** The failure's message, for logs, HALT reasons and dead-letter records. */
export function failureMessage(error: unknown): string {
  const cause = activityCause(error);
  return cause instanceof Error ? cause.message : String(cause);
}

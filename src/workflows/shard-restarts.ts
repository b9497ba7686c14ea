/**
 * How the stream consumer keeps every shard consumed, as KCL's lease auditor does: a shard consumer that ends before its
 * shard does (ZOMBIE, REQUESTED by someone else, FAILED, TERMINATED, TIMED_OUT) is started again, with backoff. Only the
 * end of the shard (TERMINATE, ALREADY_ENDED) or a stop of the stream consumer ends a shard for good.
 *
 * Workflow code: deterministic, no Node built-ins.
 */
import {
  ApplicationFailure,
  CancelledFailure,
  ChildWorkflowFailure,
  TerminatedFailure,
  TimeoutFailure,
} from '@temporalio/workflow';
import type { ShardConsumerResult } from '../consumer-types';

/** First pause before a shard consumer is started again. */
export const RESTART_INITIAL_DELAY_MS = 1_000;
/** Longest pause between restarts of a shard consumer that keeps ending. */
export const RESTART_MAX_DELAY_MS = 60_000;
/** A consumer that ran this long before it ended counts as healthy: the backoff of its restart starts over. */
export const HEALTHY_RUN_MS = 300_000;

/** How a shard consumer that did not complete closed. */
export type ClosedReason = 'FAILED' | 'TERMINATED' | 'TIMED_OUT' | 'CANCELLED';

/** Why the stream consumer stopped tracking a shard: the consumer's own result, how it closed, or CLOSED (unknown). */
export type EndReason = ShardConsumerResult['reason'] | ClosedReason | 'CLOSED';

/** Ends after which the shard needs no consumer any more: its records are all delivered. */
export function endsShard(reason: EndReason): boolean {
  return reason === 'TERMINATE' || reason === 'ALREADY_ENDED';
}

/** The pause before the `streak`-th restart in a row (1, 2, ...): doubling from 1 s, at most 60 s. */
export function restartDelayMs(streak: number): number {
  return Math.min(RESTART_MAX_DELAY_MS, RESTART_INITIAL_DELAY_MS * 2 ** Math.max(0, Math.min(streak - 1, 20)));
}

/** The innermost message of a failure chain (an activity failure's own message only says "Activity task failed"). */
function innermostMessage(error: unknown): string {
  let message = error instanceof Error ? error.message : String(error);
  let cause: unknown = error instanceof Error ? error.cause : undefined;
  for (let depth = 0; cause instanceof Error && depth < 10; depth++) {
    if (cause.message) message = cause.message;
    cause = cause.cause;
  }
  return message;
}

/** How a child closed, from the error its result rejected with. */
export function closeOf(error: unknown): { reason: ClosedReason; message: string } {
  const cause = error instanceof ChildWorkflowFailure ? error.cause : error;
  const reason: ClosedReason =
    cause instanceof TerminatedFailure
      ? 'TERMINATED'
      : cause instanceof TimeoutFailure
        ? 'TIMED_OUT'
        : cause instanceof CancelledFailure
          ? 'CANCELLED'
          : 'FAILED';
  return { reason, message: innermostMessage(error) };
}

/**
 * Whether a failed signal to another workflow failed because that workflow is not running (never started, or already
 * closed). sdk-core reports it as an ApplicationFailure whose type is the server's cause, `ExternalWorkflowExecutionNotFound`;
 * any other cause (e.g. `SignalCountLimitExceeded`) is worth trying again.
 */
export function isWorkflowNotFound(error: unknown): boolean {
  return error instanceof ApplicationFailure && error.type === 'ExternalWorkflowExecutionNotFound';
}

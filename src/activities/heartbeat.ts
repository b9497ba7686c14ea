import { Context } from '@temporalio/activity';

/**
 * Runs `fn` while heartbeating in the background, if the activity has a heartbeat timeout: a worker that dies mid-call
 * is then noticed within that timeout instead of the (much longer) start-to-close timeout.
 *
 * The first heartbeat goes out a third of the timeout after the start, not at once: the timeout counts from the start,
 * and most calls (a read, a batch) end well before, so they cost no heartbeat round trip (and no server-side write).
 */
export async function withHeartbeats<T>(fn: () => Promise<T>): Promise<T> {
  const context = Context.current();
  const timeoutMs = context.info.heartbeatTimeoutMs;
  if (!timeoutMs) return fn();
  const timer = setInterval(() => context.heartbeat(), Math.max(100, Math.floor(timeoutMs / 3)));
  try {
    return await fn();
  } finally {
    clearInterval(timer);
  }
}

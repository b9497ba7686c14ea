/**
 * The timeouts in workflow histories: how shards noticed dead workers (heartbeat, schedule-to-start), and the ones that
 * cost long stalls (start-to-close of an activity a dead worker had taken, workflow tasks a dead worker had started).
 * Attempts that were retried leave no event of their own: they show as the `lastFailure` of the next attempt's start.
 */
import type { Client } from '@temporalio/client';
import { decodeTimeoutType } from '@temporalio/common/lib/failure';
import { tsToMs } from '@temporalio/common/lib/time';
import { temporal } from '@temporalio/proto';

const EventType = temporal.api.enums.v1.EventType;

export interface TimeoutEvent {
  workflowId: string;
  runId: string;
  /** When the timeout was recorded (epoch ms). */
  at: number;
  /** `activity <type>` or `workflow task`. */
  what: string;
  timeoutType: string;
  /** From the task's scheduled event to its timeout. */
  waitedMs: number;
  /** The identity of the worker that had started the task (a timed-out start-to-close), and when. */
  startedBy?: { identity: string; at: number };
}

function startedBy(started: temporal.api.history.v1.IHistoryEvent | undefined): Pick<TimeoutEvent, 'startedBy'> {
  const identity =
    started?.workflowTaskStartedEventAttributes?.identity ?? started?.activityTaskStartedEventAttributes?.identity;
  return started && identity ? { startedBy: { identity, at: tsToMs(started.eventTime) } } : {};
}

/**
 * Every activity and workflow-task timeout in the histories of the executions the visibility query lists and of the runs
 * they continued from, and how many runs there were.
 */
export async function timeoutsIn(
  client: Client,
  query: string,
): Promise<{ executions: number; timeouts: TimeoutEvent[] }> {
  const timeouts: TimeoutEvent[] = [];
  const runs: { workflowId: string; runId: string }[] = [];
  for await (const { workflowId, runId } of client.workflow.list({ query })) runs.push({ workflowId, runId });
  const seen = new Set<string>();
  for (let next = runs.pop(); next; next = runs.pop()) {
    const execution = next;
    if (seen.has(execution.runId)) continue;
    seen.add(execution.runId);
    const history = await client.workflow.getHandle(execution.workflowId, execution.runId).fetchHistory();
    // Earlier runs of a continue-as-new chain, whether or not the listing had them.
    const previous = history.events?.[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId;
    if (previous) runs.push({ workflowId: execution.workflowId, runId: previous });
    const byId = new Map<number, temporal.api.history.v1.IHistoryEvent>();
    for (const event of history.events ?? []) {
      byId.set(Number(event.eventId), event);
      const at = tsToMs(event.eventTime);
      const scheduledAt = (id: unknown) => tsToMs(byId.get(Number(id))?.eventTime);
      if (event.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT) {
        const attributes = event.activityTaskTimedOutEventAttributes;
        const scheduled = byId.get(Number(attributes?.scheduledEventId));
        timeouts.push({
          workflowId: execution.workflowId,
          runId: execution.runId,
          at,
          what: `activity ${scheduled?.activityTaskScheduledEventAttributes?.activityType?.name ?? '?'}`,
          timeoutType: decodeTimeoutType(attributes?.failure?.timeoutFailureInfo?.timeoutType) ?? '?',
          waitedMs: at - scheduledAt(attributes?.scheduledEventId),
          ...startedBy(byId.get(Number(attributes?.startedEventId))),
        });
      }
      if (event.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED) {
        // A retried attempt: the attempts before it failed or timed out without an event of their own.
        const attributes = event.activityTaskStartedEventAttributes;
        const failure = attributes?.lastFailure;
        if ((attributes?.attempt ?? 1) > 1 && failure) {
          const scheduled = byId.get(Number(attributes?.scheduledEventId));
          timeouts.push({
            workflowId: execution.workflowId,
            runId: execution.runId,
            at,
            what: `activity ${scheduled?.activityTaskScheduledEventAttributes?.activityType?.name ?? '?'} attempt ${attributes?.attempt}`,
            timeoutType: failure.timeoutFailureInfo
              ? (decodeTimeoutType(failure.timeoutFailureInfo.timeoutType) ?? '?')
              : `failed: ${failure.message ?? '?'}`,
            waitedMs: at - scheduledAt(attributes?.scheduledEventId),
          });
        }
      }
      if (event.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT) {
        const attributes = event.workflowTaskTimedOutEventAttributes;
        timeouts.push({
          workflowId: execution.workflowId,
          runId: execution.runId,
          at,
          what: 'workflow task',
          timeoutType: decodeTimeoutType(attributes?.timeoutType) ?? '?',
          waitedMs: at - scheduledAt(attributes?.scheduledEventId),
          ...startedBy(byId.get(Number(attributes?.startedEventId))),
        });
      }
    }
  }
  return { executions: seen.size, timeouts: timeouts.sort((a, b) => a.at - b.at) };
}

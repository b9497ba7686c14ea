/**
 * What a shard consumer costs in Temporal: events, bytes and workflow tasks of its history, in total and per batch in
 * the steady state (between the first and the last processRecords of the run, so start-up and shutdown do not count).
 */
import type { WorkflowHandle } from '@temporalio/client';
import { decodeTimeoutType } from '@temporalio/common/lib/failure';
import { optionalTsToMs, tsToMs } from '@temporalio/common/lib/time';
import { temporal } from '@temporalio/proto';

const { EventType } = temporal.api.enums.v1;

export interface HistoryFigures {
  events: number;
  bytes: number;
  workflowTasks: number;
  /** Local activities (the checkpoint writes) are recorded as markers. */
  markers: number;
  /** Activities scheduled, by type. */
  activities: Record<string, number>;
  largestEventBytes: number;
  /** Whether `marker` (a byte string of record data) occurs anywhere in the history. */
  containsRecordData?: boolean;
  /** Steady state: from the first processRecords scheduled to the last, per processRecords call. */
  steady: {
    batches: number;
    eventsPerBatch: number;
    bytesPerBatch: number;
    workflowTasksPerBatch: number;
    markersPerBatch: number;
    activitiesPerBatch: number;
  };
}

/** Fetches the history of the workflow's current run and measures it. */
export async function historyFigures(handle: WorkflowHandle, recordDataMarker?: Buffer): Promise<HistoryFigures> {
  const history = await handle.fetchHistory();
  const events = history.events ?? [];
  const encoded = Buffer.from(temporal.api.history.v1.History.encode(history).finish());
  const sizes = events.map((event) => temporal.api.history.v1.HistoryEvent.encode(event).finish().length);
  const activities: Record<string, number> = {};
  const processScheduled: number[] = [];
  events.forEach((event, index) => {
    if (event.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) {
      const name = event.activityTaskScheduledEventAttributes?.activityType?.name ?? 'unknown';
      activities[name] = (activities[name] ?? 0) + 1;
      if (name === 'processRecords') processScheduled.push(index);
    }
  });
  const count = (from: number, to: number, type: temporal.api.enums.v1.EventType) =>
    events.slice(from, to).filter((event) => event.eventType === type).length;
  const first = processScheduled[0] ?? 0;
  const last = processScheduled.at(-1) ?? 0;
  const batches = Math.max(0, processScheduled.length - 1);
  const per = (value: number) => (batches > 0 ? value / batches : Number.NaN);
  return {
    events: events.length,
    bytes: encoded.length,
    workflowTasks: count(0, events.length, EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED),
    markers: count(0, events.length, EventType.EVENT_TYPE_MARKER_RECORDED),
    activities,
    largestEventBytes: Math.max(0, ...sizes),
    ...(recordDataMarker ? { containsRecordData: encoded.includes(recordDataMarker) } : {}),
    steady: {
      batches,
      eventsPerBatch: per(last - first),
      bytesPerBatch: per(sizes.slice(first, last).reduce((a, b) => a + b, 0)),
      workflowTasksPerBatch: per(count(first, last, EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)),
      markersPerBatch: per(count(first, last, EventType.EVENT_TYPE_MARKER_RECORDED)),
      activitiesPerBatch: per(count(first, last, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)),
    },
  };
}

/** A timeout Temporal recorded, relative to a reference time (e.g. the moment a worker was killed). */
export interface TimeoutEvent {
  /** ms after the reference time. */
  atMs: number;
  /** `workflow task` or the activity type. */
  what: string;
  /** START_TO_CLOSE, SCHEDULE_TO_START, HEARTBEAT, ... */
  timeoutType: string;
}

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

/** When an event was recorded (epoch ms); NaN if it has no time. */
function epochMs(event: HistoryEvent): number {
  return optionalTsToMs(event.eventTime) ?? Number.NaN;
}

/** The events of the workflow's current run, for the functions below (fetch once, read many times). */
export async function historyEvents(handle: WorkflowHandle): Promise<HistoryEvent[]> {
  return (await handle.fetchHistory()).events ?? [];
}

/**
 * The workflow-task and activity timeouts recorded between `from` and `to` (epoch ms): which timeout a failover waited
 * for.
 */
export function timeoutsBetween(events: HistoryEvent[], from: number, to: number): TimeoutEvent[] {
  const activityTypes = new Map<string, string>();
  const timeouts: TimeoutEvent[] = [];
  for (const event of events) {
    const at = epochMs(event);
    if (event.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) {
      activityTypes.set(String(event.eventId), event.activityTaskScheduledEventAttributes?.activityType?.name ?? '?');
    }
    if (at < from || at > to) continue;
    if (event.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT) {
      timeouts.push({
        atMs: at - from,
        what: 'workflow task',
        timeoutType: timeoutTypeName(event.workflowTaskTimedOutEventAttributes?.timeoutType),
      });
    }
    if (event.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT) {
      const attributes = event.activityTaskTimedOutEventAttributes;
      timeouts.push({
        atMs: at - from,
        what: activityTypes.get(String(attributes?.scheduledEventId)) ?? 'activity',
        timeoutType: timeoutTypeName(attributes?.failure?.timeoutFailureInfo?.timeoutType),
      });
    }
  }
  return timeouts;
}

/** START_TO_CLOSE, HEARTBEAT, ...; UNSPECIFIED for none. */
function timeoutTypeName(type: temporal.api.enums.v1.TimeoutType | null | undefined): string {
  return decodeTimeoutType(type) ?? 'UNSPECIFIED';
}

/** Every event between `from` and `to` (epoch ms), as `+ms TYPE` lines (debugging). */
export function timelineBetween(events: HistoryEvent[], from: number, to: number): string[] {
  return events
    .map((event) => ({ at: epochMs(event), event }))
    .filter(({ at }) => at >= from - 2_000 && at <= to)
    .map(({ at, event }) => {
      const type = (EventType[event.eventType ?? 0] ?? '?').replace('EVENT_TYPE_', '');
      const activity = event.activityTaskScheduledEventAttributes;
      const detail = activity ? ` ${activity.activityType?.name ?? ''} on ${activity.taskQueue?.name ?? ''}` : '';
      const wft = event.workflowTaskScheduledEventAttributes?.taskQueue;
      const timer = event.timerStartedEventAttributes?.startToFireTimeout;
      const timerDetail = timer ? ` ${tsToMs(timer)} ms` : '';
      return `${String(at - from).padStart(7)} ms ${type}${detail}${timerDetail}${wft ? ` on ${wft.name ?? ''} (kind ${wft.kind ?? ''})` : ''}`;
    });
}

/**
 * The first workflow task that ran on a normal (not sticky) queue at or after `from` (epoch ms): how long its worker took
 * from starting it to completing it, i.e. fetching and replaying the whole history of the run (ms); NaN if none.
 */
export function replayAfter(events: HistoryEvent[], from: number): number {
  const start = events.findIndex(
    (event) =>
      event.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED &&
      epochMs(event) >= from &&
      event.workflowTaskScheduledEventAttributes?.taskQueue?.kind ===
        temporal.api.enums.v1.TaskQueueKind.TASK_QUEUE_KIND_NORMAL,
  );
  if (start < 0) return Number.NaN;
  const started = events.slice(start).find((event) => event.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED);
  const completed = events
    .slice(start)
    .find((event) => event.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED);
  return started && completed ? epochMs(completed) - epochMs(started) : Number.NaN;
}

/** Identity of the worker that started the last workflow task before `before` (epoch ms): where the workflow is cached. */
export function lastWorkflowWorker(events: HistoryEvent[], before: number): string | undefined {
  const started = events.filter(
    (event) => event.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED && epochMs(event) < before,
  );
  return started.at(-1)?.workflowTaskStartedEventAttributes?.identity ?? undefined;
}

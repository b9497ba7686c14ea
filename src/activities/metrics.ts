import { Context } from '@temporalio/activity';
import type { MetricMeter } from '@temporalio/common';
import type { ShardRef } from '../consumer-types';

/**
 * The metrics temporal-kcl emits, through Temporal's metric meter (so a worker's Prometheus or OpenTelemetry exporter
 * shows them next to Temporal's own). Each is tagged with `application`, `stream` and `shard_id`.
 */
export const METRIC = {
  recordsProcessed: 'kcl_records_processed',
  bytesProcessed: 'kcl_bytes_processed',
  batches: 'kcl_batches',
  millisBehindLatest: 'kcl_millis_behind_latest',
  getRecordsTime: 'kcl_get_records_time',
  processRecordsTime: 'kcl_process_records_time',
  deaggregationFailures: 'kcl_deaggregation_failures',
  droppedOutOfRange: 'kcl_records_dropped_out_of_range',
  checkpoints: 'kcl_checkpoints',
  retries: 'kcl_activity_retries',
  deadLetteredRecords: 'kcl_dead_lettered_records',
  fanOutSubscriptions: 'kcl_fan_out_subscriptions',
} as const;

export interface ShardMetrics {
  recordsProcessed(count: number): void;
  bytesProcessed(bytes: number): void;
  batch(): void;
  millisBehindLatest(ms: number): void;
  getRecordsTime(ms: number): void;
  processRecordsTime(ms: number): void;
  deaggregationFailures(count: number): void;
  droppedOutOfRange(count: number): void;
  checkpoint(): void;
  deadLettered(records: number): void;
  fanOutSubscriptions(count: number): void;
}

/** The shard's metrics, tagged with its application, stream and shard. */
export function shardMetrics(ref: ShardRef, meter: MetricMeter = Context.current().metricMeter): ShardMetrics {
  const tagged = meter.withTags({ application: ref.applicationName, stream: ref.streamName, shard_id: ref.shardId });
  const counter = (name: string, unit: string, description: string) => tagged.createCounter(name, unit, description);
  const histogram = (name: string, description: string) => tagged.createHistogram(name, 'float', 'ms', description);
  return {
    recordsProcessed: (count) =>
      counter(METRIC.recordsProcessed, 'records', 'User records delivered to processRecords').add(count),
    bytesProcessed: (bytes) =>
      counter(METRIC.bytesProcessed, 'bytes', 'Bytes of user-record data delivered').add(bytes),
    batch: () => counter(METRIC.batches, 'batches', 'GetRecords batches read').add(1),
    millisBehindLatest: (ms) =>
      tagged
        .createGauge(METRIC.millisBehindLatest, 'int', 'ms', 'How far the consumer is behind the tip of the shard')
        .set(ms),
    getRecordsTime: (ms) =>
      histogram(METRIC.getRecordsTime, 'Time of a GetRecords call plus de-aggregation').record(ms),
    processRecordsTime: (ms) => histogram(METRIC.processRecordsTime, 'Time of a processRecords call').record(ms),
    deaggregationFailures: (count) =>
      counter(
        METRIC.deaggregationFailures,
        'records',
        'KPL aggregates skipped because they could not be de-aggregated',
      ).add(count),
    droppedOutOfRange: (count) =>
      counter(METRIC.droppedOutOfRange, 'records', 'User records dropped because they hash outside the shard').add(
        count,
      ),
    checkpoint: () => counter(METRIC.checkpoints, 'checkpoints', 'Checkpoints written').add(1),
    deadLettered: (records) =>
      counter(METRIC.deadLetteredRecords, 'records', 'User records sent to the dead-letter destination').add(records),
    fanOutSubscriptions: (count) =>
      counter(
        METRIC.fanOutSubscriptions,
        'calls',
        'SubscribeToShard calls (enhanced fan-out): each push stream, its renewals and its retries',
      ).add(count),
  };
}

/**
 * Counts a retried checkpoint write (tagged `activity="checkpoint"`): a processor's checkpoints are written on its
 * worker, inside the activity that runs it, and retried there.
 */
export function countCheckpointRetry(ref: ShardRef): void {
  Context.current()
    .metricMeter.withTags({
      application: ref.applicationName,
      stream: ref.streamName,
      shard_id: ref.shardId,
      activity: 'checkpoint',
    })
    .createCounter(METRIC.retries, 'attempts', 'Activity attempts after the first')
    .add(1);
}

/** Counts an activity attempt after the first (a retry), tagged with the activity type and the failure it follows. */
/**
 * Counts an attempt after the first. `priorAttempts`: attempts made before this activity's first (a window that failed
 * on the batch before the workflow delivered it as a durable step).
 */
export function countRetry(ref: ShardRef, priorAttempts = 0): void {
  const context = Context.current();
  if (context.info.attempt + priorAttempts <= 1) return;
  context.metricMeter
    .withTags({
      application: ref.applicationName,
      stream: ref.streamName,
      shard_id: ref.shardId,
      activity: context.info.activityType,
    })
    .createCounter(METRIC.retries, 'attempts', 'Activity attempts after the first')
    .add(1);
}

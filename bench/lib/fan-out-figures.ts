/**
 * Pure arithmetic of the fan-out measurement (bench/fan-out.ts): latency percentiles from per-record lags, a shard's
 * catch-up rate from the batches its processor reported, and the ratio of two figures.
 */
import { max, MIB, percentile, round } from './stats';

export interface LatencyFigures {
  samples: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** p50, p90, p99 and max of put → processRecords lags (ms, whole). */
export function latencyFigures(lagsMs: readonly number[]): LatencyFigures {
  return {
    samples: lagsMs.length,
    p50Ms: round(percentile(lagsMs, 50), 0),
    p90Ms: round(percentile(lagsMs, 90), 0),
    p99Ms: round(percentile(lagsMs, 99), 0),
    maxMs: round(max(lagsMs), 0),
  };
}

/** One processRecords call with records, as the worker reports it. */
export interface TimedBatch {
  records: number;
  bytes: number;
  /** When processRecords was called (epoch ms). */
  at: number;
}

export interface CatchUpFigures {
  records: number;
  bytes: number;
  batches: number;
  /** Start request → the first batch's processRecords (ms): start-up, registration and the first read. */
  firstBatchMs: number;
  /** Start request → the last batch's processRecords (ms). */
  elapsedMs: number;
  /** Over the whole run, start-up included. */
  recordsPerSec: number;
  kibPerSec: number;
  /** After the first batch: the rate the shard streams at once the read runs (null with a single batch). */
  steadyRecordsPerSec: number | null;
  steadyKibPerSec: number | null;
  steadyMibPerSec: number | null;
}

/** How fast a shard's backlog was consumed, from the start request and the batches (in any order). */
export function catchUpFigures(startedAt: number, batches: readonly TimedBatch[]): CatchUpFigures {
  if (batches.length === 0) throw new Error('catchUpFigures: no batches');
  const sorted = [...batches].sort((a, b) => a.at - b.at);
  const first = sorted[0]!;
  const last = sorted.at(-1)!;
  const records = sorted.reduce((sum, batch) => sum + batch.records, 0);
  const bytes = sorted.reduce((sum, batch) => sum + batch.bytes, 0);
  const elapsedMs = last.at - startedAt;
  const seconds = Math.max(0.001, elapsedMs / 1_000);
  const steadySeconds = (last.at - first.at) / 1_000;
  const steady = sorted.length > 1 && steadySeconds > 0;
  return {
    records,
    bytes,
    batches: sorted.length,
    firstBatchMs: first.at - startedAt,
    elapsedMs,
    recordsPerSec: round(records / seconds, 0),
    kibPerSec: round(bytes / 1_024 / seconds, 0),
    steadyRecordsPerSec: steady ? round((records - first.records) / steadySeconds, 0) : null,
    steadyKibPerSec: steady ? round((bytes - first.bytes) / 1_024 / steadySeconds, 0) : null,
    steadyMibPerSec: steady ? round((bytes - first.bytes) / MIB / steadySeconds, 2) : null,
  };
}

/** `value / base` rounded to 2 decimals; null when either is missing or the base is 0. */
export function ratio(value: number | null | undefined, base: number | null | undefined): number | null {
  if (value === null || value === undefined || base === null || base === undefined || base === 0) return null;
  return round(value / base, 2);
}

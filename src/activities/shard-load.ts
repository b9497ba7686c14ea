/**
 * The load of each shard pinned to this worker: bytes and user records delivered to its processor, and their
 * one-minute exponentially weighted averages (KB/s, records/s). The load reporter writes them into the lease item
 * (`throughputKBps`, Java KCL 3.x's own per-lease load, and `temporalKclRecordsPerSec`) for the coordinator to weigh.
 */
import type { ShardRef } from '../consumer-types';

/** Time constant of the averages: a step in load shows 63 % after this long (KCL 3.x also averages over a minute). */
export const LOAD_EWMA_WINDOW_MS = 60_000;

/** A shard's measured load under one pin. */
export interface ShardLoad {
  /** Bytes delivered under the pin (record data, as `bytesProcessed` counts it). */
  bytes: number;
  /** User records delivered under the pin. */
  records: number;
  /** One-minute average of KB/s (1 KB = 1024 bytes); absent until a sample spans at least `minSampleMs`. */
  kbps?: number;
  /** One-minute average of user records/s; absent until then. */
  recordsPerSec?: number;
}

interface Meter {
  bytes: number;
  records: number;
  /** Counts since the last sample, and when it was taken (or when the pin was first seen). */
  pendingBytes: number;
  pendingRecords: number;
  sampledAt: number;
  kbps?: number;
  recordsPerSec?: number;
}

function meterKey(ref: ShardRef, pin: string): string {
  return JSON.stringify([ref.applicationName, ref.streamName, ref.shardId, pin]);
}

/**
 * Load per hosted pin. `add` is called where batches are delivered (one map lookup, no timers); `sample` folds what
 * arrived since the previous sample into the averages (the reporter calls it before each write).
 */
export class ShardLoadMeter {
  private readonly meters = new Map<string, Meter>();

  constructor(
    private readonly options: {
      /** @default LOAD_EWMA_WINDOW_MS */
      windowMs?: number;
      /** Samples closer together than this are not folded (a rate over a few ms says nothing). @default 1000 */
      minSampleMs?: number;
      now?: () => number;
    } = {},
  ) {}

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  /** Counts a batch delivered to the shard's processor under `pin`. */
  add(ref: ShardRef, pin: string, bytes: number, records: number): void {
    const meter = this.meterOf(meterKey(ref, pin));
    meter.bytes += bytes;
    meter.records += records;
    meter.pendingBytes += bytes;
    meter.pendingRecords += records;
  }

  /** Starts measuring a pin (the interval of its first sample begins now); no effect if it is already measured. */
  track(ref: ShardRef, pin: string): void {
    this.meterOf(meterKey(ref, pin));
  }

  /** Folds the deliveries since the last sample into the averages and returns the pin's load. */
  sample(ref: ShardRef, pin: string): ShardLoad {
    const meter = this.meterOf(meterKey(ref, pin));
    const now = this.now();
    const elapsedMs = now - meter.sampledAt;
    if (elapsedMs >= (this.options.minSampleMs ?? 1_000)) {
      const kbps = meter.pendingBytes / 1024 / (elapsedMs / 1000);
      const recordsPerSec = meter.pendingRecords / (elapsedMs / 1000);
      // Irregular intervals: the weight of the new rate grows with the time it covers.
      const alpha = 1 - Math.exp(-elapsedMs / (this.options.windowMs ?? LOAD_EWMA_WINDOW_MS));
      meter.kbps = meter.kbps === undefined ? kbps : meter.kbps + alpha * (kbps - meter.kbps);
      meter.recordsPerSec =
        meter.recordsPerSec === undefined
          ? recordsPerSec
          : meter.recordsPerSec + alpha * (recordsPerSec - meter.recordsPerSec);
      meter.pendingBytes = 0;
      meter.pendingRecords = 0;
      meter.sampledAt = now;
    }
    return {
      bytes: meter.bytes,
      records: meter.records,
      ...(meter.kbps !== undefined ? { kbps: meter.kbps } : {}),
      ...(meter.recordsPerSec !== undefined ? { recordsPerSec: meter.recordsPerSec } : {}),
    };
  }

  /** Forgets every pin but these (pins no longer hosted here). */
  retain(pins: Iterable<{ ref: ShardRef; pin: string }>): void {
    const keep = new Set([...pins].map(({ ref, pin }) => meterKey(ref, pin)));
    for (const key of this.meters.keys()) if (!keep.has(key)) this.meters.delete(key);
  }

  get size(): number {
    return this.meters.size;
  }

  private meterOf(key: string): Meter {
    let meter = this.meters.get(key);
    if (!meter) {
      meter = { bytes: 0, records: 0, pendingBytes: 0, pendingRecords: 0, sampledAt: this.now() };
      this.meters.set(key, meter);
    }
    return meter;
  }
}

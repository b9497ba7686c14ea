import { randomUUID } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/activity';
import { FailureType } from '../failure-types';
import type { KinesisRecord } from '../record-processor';

/** A batch read from Kinesis, held in the reading worker's memory until it is processed. */
export interface CachedBatch {
  records: KinesisRecord[];
  bytes: number;
  /** Epoch ms when the read started. */
  readAt: number;
  millisBehindLatest: number;
}

export interface BatchCacheOptions {
  /**
   * Most bytes of record data held at once; the oldest batches are evicted beyond it (a process step that finds its
   * batch gone reads it again from Kinesis).
   * @default 512 MiB
   */
  maxBytes?: number;
  /**
   * A batch nobody processed within this time is dropped (its workflow moved on, e.g. a prefetch before a stop).
   * @default 600000 (10 minutes)
   */
  ttlMs?: number;
}

/**
 * Keeps batches between the read activity and the process activity, so that record data never travels through
 * Temporal history: the workflow only carries the handle. Bounded by bytes and age.
 */
export class BatchCache {
  private readonly batches = new Map<string, CachedBatch & { storedAt: number }>();
  private totalBytes = 0;
  private readonly maxBytes: number;
  private readonly ttlMs: number;

  constructor(options: BatchCacheOptions = {}) {
    this.maxBytes = options.maxBytes ?? 512 * 1024 * 1024;
    this.ttlMs = options.ttlMs ?? 600_000;
  }

  /** Stores a batch; returns its handle. */
  put(batch: CachedBatch): string {
    this.expire();
    const handle = randomUUID();
    this.batches.set(handle, { ...batch, storedAt: Date.now() });
    this.totalBytes += batch.bytes;
    // Map iteration order is insertion order: evict the oldest first, never the batch just stored.
    for (const [oldest, entry] of this.batches) {
      if (this.totalBytes <= this.maxBytes || oldest === handle) break;
      this.delete(oldest, entry.bytes);
    }
    return handle;
  }

  get(handle: string): CachedBatch | undefined {
    return this.batches.get(handle);
  }

  /**
   * The batch, for an activity about to deliver it. A batch no longer here (evicted, expired, or this worker restarted)
   * fails the activity as BatchLost, non-retryable and BENIGN: the workflow reads the same records again, routinely.
   */
  require(handle: string, shardId: string): CachedBatch {
    const batch = this.batches.get(handle);
    if (batch) return batch;
    throw ApplicationFailure.create({
      type: FailureType.BatchLost,
      category: 'BENIGN',
      message: `batch ${handle} of ${shardId} is no longer in this worker's memory; it will be read again`,
      nonRetryable: true,
    });
  }

  /** Drops a batch once it has been processed. */
  release(handle: string): void {
    const entry = this.batches.get(handle);
    if (entry) this.delete(handle, entry.bytes);
  }

  get size(): number {
    return this.batches.size;
  }

  get bytes(): number {
    return this.totalBytes;
  }

  private delete(handle: string, bytes: number): void {
    this.batches.delete(handle);
    this.totalBytes -= bytes;
  }

  private expire(): void {
    const cutoff = Date.now() - this.ttlMs;
    for (const [handle, entry] of this.batches) {
      if (entry.storedAt >= cutoff) break;
      this.delete(handle, entry.bytes);
    }
  }
}

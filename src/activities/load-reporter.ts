/**
 * The worker's load reports: for every shard pinned here, its measured load (see shard-load.ts) and this worker's
 * queue and cap, written into the shard's lease item. The coordinator's fleet scan reads them (fleet-activities.ts):
 * where each shard lives and how busy it is, at no Temporal cost.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { CheckpointTable } from '../checkpoint/checkpoint-table';
import type { HostedPin, ProcessorHost } from './processor-host';
import type { ShardLoadMeter } from './shard-load';

/** How often each hosted pin's load is written. */
export const DEFAULT_LOAD_REPORT_INTERVAL_MS = 30_000;

/** How often the reporter looks for new pins: a pin new on this worker is reported within this long. */
const TICK_MS = 1_000;

export interface LoadReporterOptions {
  dynamoDb: DynamoDBClient;
  host: ProcessorHost;
  meter: ShardLoadMeter;
  /** This worker's own task queue (`temporalKclWorker`). */
  workerQueue: string;
  /** This worker's `maxShardsPerWorker` (`temporalKclMaxShards`). @default unlimited */
  maxShards?: number;
  /** @default DEFAULT_LOAD_REPORT_INTERVAL_MS */
  intervalMs?: number;
  /** Told of a write that failed for another reason than a lost lease (it is tried again at the next interval). */
  onError?: (pin: HostedPin, error: unknown) => void;
}

export interface LoadReporter {
  /** Reports written so far, and pins that stopped reporting because their lease changed owner. */
  readonly stats: { reports: number; lost: number; failures: number };
  /** Stops the loop and waits for writes in flight. */
  stop(): Promise<void>;
}

interface PinState {
  nextAt: number;
  /** The lease is no longer this pin's owner's: never written again. */
  lost?: boolean;
}

function pinKey(pin: HostedPin): string {
  return JSON.stringify([pin.ref.applicationName, pin.ref.streamName, pin.ref.shardId, pin.pin]);
}

/**
 * Writes each hosted pin's load into its lease item: within a second of the pin arriving here, then every
 * `intervalMs`. Owner-conditioned, no counter change; a lost lease silently ends that pin's reports.
 */
export function startLoadReporter(options: LoadReporterOptions): LoadReporter {
  const intervalMs = options.intervalMs ?? DEFAULT_LOAD_REPORT_INTERVAL_MS;
  const tables = new Map<string, CheckpointTable>();
  const states = new Map<string, PinState>();
  const stats = { reports: 0, lost: 0, failures: 0 };
  let inFlight: Promise<void> | undefined;
  let stopped = false;

  const tableFor = (tableName: string, streamIdentifier: string | undefined): CheckpointTable => {
    const cacheKey = JSON.stringify([tableName, streamIdentifier ?? null]);
    let table = tables.get(cacheKey);
    if (!table) {
      table = new CheckpointTable({
        dynamoDb: options.dynamoDb,
        tableName,
        ...(streamIdentifier !== undefined ? { streamIdentifier } : {}),
      });
      tables.set(cacheKey, table);
    }
    return table;
  };

  const report = async (pin: HostedPin, state: PinState, now: number): Promise<void> => {
    const lease = pin.lease;
    if (!lease) return;
    state.nextAt = now + intervalMs;
    const load = options.meter.sample(pin.ref, pin.pin);
    try {
      const written = await tableFor(lease.tableName, pin.ref.streamIdentifier).report({
        shardId: pin.ref.shardId,
        owner: lease.owner,
        worker: options.workerQueue,
        // Not measured yet (a pin just arrived): the previous worker's figures stay, the best guess of the shard's load.
        ...(load.kbps !== undefined ? { kbps: load.kbps } : {}),
        ...(load.recordsPerSec !== undefined ? { recordsPerSec: load.recordsPerSec } : {}),
        ...(options.maxShards !== undefined ? { maxShards: options.maxShards } : {}),
        reportedAt: Date.now(),
      });
      if (written) stats.reports++;
      else {
        state.lost = true;
        stats.lost++;
      }
    } catch (error) {
      stats.failures++;
      options.onError?.(pin, error);
    }
  };

  const tick = async (): Promise<void> => {
    const pins = options.host.pins();
    options.meter.retain(pins);
    const seen = new Set<string>();
    const now = Date.now();
    const due: Promise<void>[] = [];
    for (const pin of pins) {
      if (!pin.lease) continue;
      const key = pinKey(pin);
      seen.add(key);
      let state = states.get(key);
      if (!state) {
        // New here: measured from now, reported at once (the coordinator learns where the shard landed).
        options.meter.track(pin.ref, pin.pin);
        state = { nextAt: now };
        states.set(key, state);
      }
      if (!state.lost && state.nextAt <= now) due.push(report(pin, state, now));
    }
    for (const key of states.keys()) if (!seen.has(key)) states.delete(key);
    await Promise.all(due);
  };

  const timer = setInterval(
    () => {
      if (stopped) return;
      inFlight ??= tick()
        .catch(() => undefined)
        .finally(() => (inFlight = undefined));
    },
    Math.min(TICK_MS, intervalMs),
  );
  timer.unref?.();

  return {
    stats,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await inFlight;
    },
  };
}

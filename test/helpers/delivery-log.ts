/**
 * Checks what worker processes delivered (the output file of test/fixtures/worker-process.ts, shared by every process)
 * against what was produced, the worker kills and the durable checkpoints seen in the lease table: nothing lost; every
 * duplicate explained by a kill and within one batch per killed delivery run; per partition key, order kept within each
 * delivery run and across parent and child shards. Pure: it reads what it is given and returns findings and figures.
 */
import type { WorkerProcessLine } from '../fixtures/worker-process';
import {
  type Checkpoint,
  comparePositions,
  type ExtendedSequenceNumber,
  formatPosition,
  SentinelCheckpoint,
} from '../../src/positions';

type Line<K extends WorkerProcessLine['kind']> = Extract<WorkerProcessLine, { kind: K }>;

/** One delivery of a user record, with its place in the file. */
export interface Delivery {
  index: number;
  at: number;
  pid: number;
  instance: string;
  shardId: string;
  batch: string;
  position: ExtendedSequenceNumber;
  data: string;
  key: string;
  n: number;
}

/** A delivery run: one processor instance on one worker process, from `initialize` on. */
export interface DeliveryRun {
  instance: string;
  pid: number;
  shardId: string;
  index: number;
  at: number;
  startingPosition: unknown;
  /** Batches in delivery order: user records in the batch, records written out, checkpoint asked for. */
  batches: { batch: string; count: number; written: number; checkpointed: boolean; at: number }[];
  deliveries: Delivery[];
  shutdown?: { reason: string; at: number; index: number };
}

/** A SIGKILL sent by the test, and when (epoch ms, taken just before the signal). */
export interface Kill {
  pid: number;
  at: number;
}

/** A checkpoint read from the lease table; `at` is when the read completed (it was durable by then). */
export interface LeaseSnapshot {
  at: number;
  shardId: string;
  checkpoint: Checkpoint;
}

export interface DeliveryCheckInput {
  lines: WorkerProcessLine[];
  /** Every user record produced, by data (`<key>#<n>`). */
  produced: ReadonlyMap<string, { key: string; n: number }>;
  kills: Kill[];
  snapshots: LeaseSnapshot[];
  /** Parent shards of each child shard. */
  parents: ReadonlyMap<string, string[]>;
}

export interface KillFigures {
  pid: number;
  at: number;
  /** Shards whose processor lived in the killed process. */
  shards: string[];
  /** A batch of the killed process was not finished (records written out < batch size, or no checkpoint asked). */
  midBatch: boolean;
  /** Per shard, ms from the kill until a processor on another worker was initialized for it. */
  recoveryMs: Record<string, number>;
  /** User records in the last batch each hit shard's processor received (in flight, or not yet checkpointed). */
  lastBatches: number;
  /** User records delivered again after this kill. */
  redelivered: number;
}

export interface DeliveryReport {
  /** Each entry names a broken guarantee; empty when all hold. */
  violations: { lost: string[]; duplicates: string[]; order: string[]; checkpoints: string[]; other: string[] };
  figures: {
    produced: number;
    deliveries: number;
    duplicates: number;
    /** Sum over kills of the size of the last batch of each delivery run the kill hit (the one possibly in flight). */
    duplicateBound: number;
    redeliveredBatches: number;
    runs: number;
    kills: KillFigures[];
  };
}

const isPosition = (value: unknown): value is ExtendedSequenceNumber =>
  typeof value === 'object' &&
  value !== null &&
  typeof (value as { sequenceNumber?: unknown }).sequenceNumber === 'string';

/** Orders checkpoints: TRIM_HORIZON/LATEST/AT_TIMESTAMP < any position < SHARD_END. */
function compareCheckpoints(a: Checkpoint, b: Checkpoint): number {
  const rank = (c: Checkpoint) => (c === SentinelCheckpoint.SHARD_END ? 2 : isPosition(c) ? 1 : 0);
  if (rank(a) !== rank(b)) return rank(a) - rank(b);
  return isPosition(a) && isPosition(b) ? comparePositions(a, b) : 0;
}

/** The highest checkpoint of a shard read from the lease table before `before` (epoch ms). */
function durableBefore(snapshots: LeaseSnapshot[], shardId: string, before: number): Checkpoint | undefined {
  let best: Checkpoint | undefined;
  for (const snapshot of snapshots) {
    if (snapshot.shardId !== shardId || snapshot.at >= before) continue;
    if (best === undefined || compareCheckpoints(snapshot.checkpoint, best) > 0) best = snapshot.checkpoint;
  }
  return best;
}

const positionKey = (shardId: string, position: ExtendedSequenceNumber) =>
  `${shardId}/${position.sequenceNumber}/${position.subSequenceNumber ?? '-'}`;

function readRuns(
  lines: WorkerProcessLine[],
  other: string[],
): { runs: Map<string, DeliveryRun>; deliveries: Delivery[] } {
  const runs = new Map<string, DeliveryRun>();
  const deliveries: Delivery[] = [];
  const runOf = (line: Line<'batch' | 'record' | 'checkpoint' | 'shutdown' | 'slow' | 'hang'>, index: number) => {
    const run = runs.get(line.instance);
    if (!run) other.push(`line ${index}: ${line.kind} of ${line.instance} before its initialize`);
    return run;
  };
  lines.forEach((line, index) => {
    switch (line.kind) {
      case 'initialize':
        runs.set(line.instance, {
          instance: line.instance,
          pid: line.pid,
          shardId: line.shardId,
          index,
          at: line.at,
          startingPosition: line.startingPosition,
          batches: [],
          deliveries: [],
        });
        return;
      case 'batch':
        runOf(line, index)?.batches.push({
          batch: line.batch,
          count: line.count,
          written: 0,
          checkpointed: false,
          at: line.at,
        });
        return;
      case 'record': {
        const run = runOf(line, index);
        const batch = run?.batches.at(-1);
        if (!run || batch?.batch !== line.batch) {
          other.push(`line ${index}: record ${line.data} outside its batch ${line.batch}`);
          return;
        }
        batch.written++;
        const [key, n] = line.data.split('#');
        if (key !== line.partitionKey)
          other.push(`line ${index}: ${line.data} came with partition key ${line.partitionKey}`);
        const delivery: Delivery = {
          index,
          at: line.at,
          pid: line.pid,
          instance: line.instance,
          shardId: line.shardId,
          batch: line.batch,
          position:
            line.subSequenceNumber === undefined
              ? { sequenceNumber: line.sequenceNumber }
              : { sequenceNumber: line.sequenceNumber, subSequenceNumber: line.subSequenceNumber },
          data: line.data,
          key: key ?? '',
          n: Number(n),
        };
        run.deliveries.push(delivery);
        deliveries.push(delivery);
        return;
      }
      case 'checkpoint': {
        const batch = runOf(line, index)?.batches.find((b) => b.batch === line.batch);
        if (batch) batch.checkpointed = true;
        return;
      }
      case 'shutdown': {
        const run = runOf(line, index);
        if (run) run.shutdown = { reason: line.reason, at: line.at, index };
        return;
      }
      default:
        return;
    }
  });
  return { runs, deliveries };
}

/** Runs the checks. */
export function checkDeliveries(input: DeliveryCheckInput): DeliveryReport {
  const violations: DeliveryReport['violations'] = { lost: [], duplicates: [], order: [], checkpoints: [], other: [] };
  const { runs, deliveries } = readRuns(input.lines, violations.other);
  const killOf = new Map(input.kills.map((kill) => [kill.pid, kill]));

  // Nothing lost, nothing made up; each user record lives at one position of one shard.
  const byData = new Map<string, Delivery[]>();
  for (const delivery of deliveries) byData.set(delivery.data, [...(byData.get(delivery.data) ?? []), delivery]);
  for (const data of input.produced.keys()) if (!byData.has(data)) violations.lost.push(data);
  for (const [data, seen] of byData) {
    if (!input.produced.has(data)) violations.other.push(`${data} delivered but never produced`);
    const positions = new Set(seen.map((d) => positionKey(d.shardId, d.position)));
    if (positions.size > 1)
      violations.other.push(`${data} delivered from ${positions.size} positions: ${[...positions].join(', ')}`);
  }

  // A run starts after its durable checkpoint: no record at or before it, and it is no older than the lease table showed.
  for (const run of runs.values()) {
    const start = run.startingPosition;
    const durable = durableBefore(input.snapshots, run.shardId, run.at);
    if (durable !== undefined && isPosition(durable) && (!isPosition(start) || comparePositions(start, durable) < 0)) {
      violations.checkpoints.push(
        `${run.instance} on ${run.shardId} started at ${formatPosition(start as Checkpoint)} though ${formatPosition(durable)} was durable`,
      );
    }
    if (!isPosition(start)) continue;
    for (const delivery of run.deliveries) {
      if (comparePositions(delivery.position, start) <= 0) {
        violations.checkpoints.push(
          `${run.instance} delivered ${delivery.data} at ${formatPosition(delivery.position)}, at or before its start ${formatPosition(start)}`,
        );
      }
    }
  }

  // Per kill: the delivery runs it hit (its process held the shard), whether a batch was cut, and how long until each
  // shard ran on another worker.
  const allRuns = [...runs.values()];
  const hitBy = new Map<Kill, DeliveryRun[]>();
  const kills: KillFigures[] = input.kills.map((kill) => {
    const hit = allRuns.filter(
      (run) =>
        run.pid === kill.pid &&
        run.at < kill.at &&
        !run.shutdown &&
        !allRuns.some((later) => later.shardId === run.shardId && later.at > run.at && later.at < kill.at),
    );
    hitBy.set(kill, hit);
    const recoveryMs: Record<string, number> = {};
    for (const run of hit) {
      const next = allRuns.find((later) => later.shardId === run.shardId && later.at >= kill.at);
      if (next) recoveryMs[run.shardId] = next.at - kill.at;
    }
    const midBatch = hit.some((run) => {
      const batch = run.batches.at(-1);
      return batch !== undefined && (batch.written < batch.count || !batch.checkpointed);
    });
    return {
      pid: kill.pid,
      at: kill.at,
      shards: hit.map((run) => run.shardId).sort(),
      midBatch,
      recoveryMs,
      lastBatches: hit.reduce((sum, run) => sum + (run.batches.at(-1)?.count ?? 0), 0),
      redelivered: 0,
    };
  });

  // Every duplicate: its previous delivery was by a worker later killed, in the last batch that run received (the one in
  // flight or not yet checkpointed at the kill), after every checkpoint read durable before the kill.
  let duplicates = 0;
  const redeliveredBatches = new Set<string>();
  for (const seen of byData.values()) {
    for (let i = 1; i < seen.length; i++) {
      duplicates++;
      const previous = seen[i - 1]!;
      const again = seen[i]!;
      const run = runs.get(previous.instance)!;
      const kill = killOf.get(run.pid);
      const figures = kills[input.kills.findIndex((k) => k === kill)];
      const where = `${again.data} (${again.shardId} ${formatPosition(again.position)}) delivered again by ${again.instance}, before by ${previous.instance} in batch ${previous.batch}`;
      redeliveredBatches.add(previous.batch);
      if (!kill || !figures || kill.at < previous.at || kill.at > again.at) {
        violations.duplicates.push(`${where}: that worker was not killed in between`);
        continue;
      }
      figures.redelivered++;
      if (!hitBy.get(kill)?.includes(run))
        violations.duplicates.push(`${where}: that run did not hold the shard at the kill`);
      if (run.batches.at(-1)?.batch !== previous.batch) {
        violations.duplicates.push(`${where}: not the last batch of that run (${run.batches.at(-1)?.batch})`);
      }
      const durable = durableBefore(input.snapshots, previous.shardId, kill.at);
      if (durable !== undefined && (!isPosition(durable) || comparePositions(previous.position, durable) <= 0)) {
        violations.duplicates.push(
          `${where}: covered by checkpoint ${formatPosition(durable)}, durable before the kill`,
        );
      }
    }
  }
  const duplicateBound = kills.reduce((sum, kill) => sum + kill.lastBatches, 0);
  kills.forEach((kill, i) => {
    if (kill.redelivered > kill.lastBatches) {
      violations.duplicates.push(
        `kill #${i + 1}: ${kill.redelivered} re-delivered, more than its last batches (${kill.lastBatches})`,
      );
    }
  });
  if (duplicates > duplicateBound)
    violations.duplicates.push(`${duplicates} duplicates, more than the bound ${duplicateBound}`);

  // Order per key: within a run, counters go up one by one; first deliveries follow the counters; parents before children.
  for (const run of runs.values()) {
    const last = new Map<string, Delivery>();
    for (const delivery of run.deliveries) {
      const before = last.get(delivery.key);
      if (before && delivery.n !== before.n + 1) {
        violations.order.push(`${run.instance} on ${run.shardId}: ${delivery.data} right after ${before.data}`);
      }
      last.set(delivery.key, delivery);
    }
  }
  const firstOf = new Map<string, Delivery>();
  for (const delivery of deliveries) if (!firstOf.has(delivery.data)) firstOf.set(delivery.data, delivery);
  for (const [data, first] of firstOf) {
    const previous = firstOf.get(`${first.key}#${first.n - 1}`);
    if (first.n > 0 && previous && previous.index > first.index) {
      violations.order.push(
        `${data} first delivered (line ${first.index}) before ${previous.data} (line ${previous.index})`,
      );
    }
  }
  for (const [child, parents] of input.parents) {
    const childFirst = deliveries.find((d) => d.shardId === child);
    if (!childFirst) continue;
    for (const parent of parents) {
      const parentLast = deliveries.filter((d) => d.shardId === parent).at(-1);
      if (parentLast && parentLast.index > childFirst.index) {
        violations.order.push(
          `child ${child} delivered ${childFirst.data} before parent ${parent} delivered ${parentLast.data}`,
        );
      }
    }
  }

  // The lease table's checkpoints never went back.
  const latest = new Map<string, LeaseSnapshot>();
  for (const snapshot of [...input.snapshots].sort((a, b) => a.at - b.at)) {
    const before = latest.get(snapshot.shardId);
    if (before && compareCheckpoints(snapshot.checkpoint, before.checkpoint) < 0) {
      violations.checkpoints.push(
        `${snapshot.shardId}: checkpoint went back from ${formatPosition(before.checkpoint)} to ${formatPosition(snapshot.checkpoint)}`,
      );
    }
    latest.set(snapshot.shardId, snapshot);
  }

  return {
    violations,
    figures: {
      produced: input.produced.size,
      deliveries: deliveries.length,
      duplicates,
      duplicateBound,
      redeliveredBatches: redeliveredBatches.size,
      runs: runs.size,
      kills,
    },
  };
}

/** The last position delivered per shard (by sequence number, then sub-sequence), from the workers' record lines. */
export function lastDeliveredByShard(lines: readonly WorkerProcessLine[]): Map<string, ExtendedSequenceNumber> {
  const lastDelivered = new Map<string, ExtendedSequenceNumber>();
  for (const line of lines) {
    if (line.kind !== 'record') continue;
    const position = { sequenceNumber: line.sequenceNumber, subSequenceNumber: line.subSequenceNumber ?? 0 };
    const before = lastDelivered.get(line.shardId);
    if (!before || comparePositions(position, before) > 0) lastDelivered.set(line.shardId, position);
  }
  return lastDelivered;
}

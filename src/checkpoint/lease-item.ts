/**
 * The lease table's item layout: Java KCL's `DynamoDBLeaseSerializer` attribute names and types, read into a {@link Lease}
 * and checked on the way in and out.
 */
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import type { HashKeyRange } from '../consumer-types';
import { InvalidLeaseRequestError, LeaseTableSchemaError } from '../errors';
import { type Checkpoint, isSentinel, isSequenceNumber } from '../positions';
/** Java KCL's attribute names (`DynamoDBLeaseSerializer`). */
export const A = {
  leaseKey: 'leaseKey',
  leaseOwner: 'leaseOwner',
  leaseCounter: 'leaseCounter',
  checkpoint: 'checkpoint',
  checkpointSubSequenceNumber: 'checkpointSubSequenceNumber',
  ownerSwitchesSinceCheckpoint: 'ownerSwitchesSinceCheckpoint',
  parentShardId: 'parentShardId',
  childShardIds: 'childShardIds',
  /** A prepared checkpoint (`prepareCheckpoint`): a sequence number, with its sub-sequence number. */
  pendingCheckpoint: 'pendingCheckpoint',
  pendingCheckpointSubSequenceNumber: 'pendingCheckpointSubSequenceNumber',
  /** Application state Java KCL stores with a prepared checkpoint (B); removed with the pending checkpoint. */
  pendingCheckpointState: 'pendingCheckpointState',
  startingHashKey: 'startingHashKey',
  endingHashKey: 'endingHashKey',
  /** Multi-stream tables only (`DynamoDBMultiStreamLeaseSerializer`): the stream identifier `<account>:<stream>:<epoch>`. */
  streamName: 'streamName',
  /** Multi-stream tables only: the bare shard id (the lease key is `<stream identifier>:<shard id>`). */
  shardId: 'shardId',
  /** Java KCL 3.x's per-lease load (`throughputKBps`): the shard's KB/s as its worker measured it (temporal-kcl writes it too). */
  throughputKBps: 'throughputKBps',
  /** temporal-kcl only (Java KCL ignores it): the own task queue of the worker that holds the shard's processor. */
  temporalKclWorker: 'temporalKclWorker',
  /** temporal-kcl only: that worker's `maxShardsPerWorker` (absent: unlimited). */
  temporalKclMaxShards: 'temporalKclMaxShards',
  /** temporal-kcl only: user records per second the worker delivered for the shard (one-minute average). */
  temporalKclRecordsPerSec: 'temporalKclRecordsPerSec',
  /** temporal-kcl only: when the worker last wrote the three above (epoch ms). */
  temporalKclReportedAt: 'temporalKclReportedAt',
} as const;

export type Item = Record<string, AttributeValue>;

/** One item of the lease table: the state of one shard. */
export interface Lease {
  /** The shard id (`leaseKey`). */
  shardId: string;
  /** The consumer holding the shard (`leaseOwner`); absent when nobody does. */
  owner?: string;
  /** Fencing token (`leaseCounter`): every write increments it. 0 when the item has none. */
  counter: number;
  /** Where processing got to (`checkpoint` + `checkpointSubSequenceNumber`); absent before the first checkpoint. */
  checkpoint?: Checkpoint;
  /**
   * A checkpoint prepared but not yet committed (`pendingCheckpoint` + `pendingCheckpointSubSequenceNumber`), as Java
   * KCL's two-phase `prepareCheckpoint` writes it (Java KCL may also prepare SHARD_END); absent when none is pending.
   */
  pendingCheckpoint?: Checkpoint;
  /** Owner changes since the last checkpoint (`ownerSwitchesSinceCheckpoint`); 0 when absent. */
  ownerSwitchesSinceCheckpoint: number;
  /** `parentShardId` (a string set): the shard(s) that must reach SHARD_END before this one starts. */
  parentShardIds: string[];
  /** `childShardIds`: written with SHARD_END. */
  childShardIds: string[];
  /** `startingHashKey` / `endingHashKey`, when both are stored. */
  hashKeyRange?: HashKeyRange;
}

/**
 * Reads a lease-table item the way Java KCL writes it. In a multi-stream table (`streamIdentifier` given) the lease's
 * shard id is the item's `shardId` attribute (or the lease key without its `<stream identifier>:` prefix).
 */
export function parseLease(item: Item, tableName: string, streamIdentifier?: string): Lease {
  const leaseKey = item[A.leaseKey]?.S;
  if (leaseKey === undefined) {
    throw new LeaseTableSchemaError(tableName, `an item has no string ${A.leaseKey}`, { attribute: A.leaseKey });
  }
  const prefix = streamIdentifier === undefined ? undefined : `${streamIdentifier}:`;
  const shardId =
    prefix === undefined
      ? leaseKey
      : (item[A.shardId]?.S ?? (leaseKey.startsWith(prefix) ? leaseKey.slice(prefix.length) : leaseKey));
  const bad = (attribute: string, what: string) =>
    new LeaseTableSchemaError(tableName, `item ${shardId}: attribute ${attribute} ${what}`, { shardId, attribute });

  const string = (attribute: string): string | undefined => {
    const value = item[attribute];
    if (value === undefined) return undefined;
    if (value.S === undefined) throw bad(attribute, `is ${typeOf(value)}, expected S`);
    return value.S;
  };
  const count = (attribute: string): number | undefined => {
    const value = item[attribute];
    if (value === undefined) return undefined;
    if (value.N === undefined) throw bad(attribute, `is ${typeOf(value)}, expected N`);
    const n = Number(value.N);
    if (!Number.isSafeInteger(n) || n < 0) throw bad(attribute, `is ${value.N}, expected a non-negative integer`);
    return n;
  };
  const stringSet = (attribute: string): string[] => {
    const value = item[attribute];
    if (value === undefined) return [];
    if (value.SS === undefined) throw bad(attribute, `is ${typeOf(value)}, expected SS`);
    return [...value.SS].sort();
  };

  const lease: Lease = {
    shardId,
    counter: count(A.leaseCounter) ?? 0,
    ownerSwitchesSinceCheckpoint: count(A.ownerSwitchesSinceCheckpoint) ?? 0,
    parentShardIds: stringSet(A.parentShardId),
    childShardIds: stringSet(A.childShardIds),
  };
  const owner = string(A.leaseOwner);
  if (owner !== undefined) lease.owner = owner;

  const checkpoint = string(A.checkpoint);
  const sub = count(A.checkpointSubSequenceNumber);
  if (checkpoint !== undefined) {
    if (isSentinel(checkpoint)) {
      lease.checkpoint = checkpoint;
    } else if (isSequenceNumber(checkpoint)) {
      lease.checkpoint =
        sub === undefined ? { sequenceNumber: checkpoint } : { sequenceNumber: checkpoint, subSequenceNumber: sub };
    } else {
      throw bad(
        A.checkpoint,
        `is '${checkpoint}', expected a decimal sequence number or TRIM_HORIZON, LATEST, AT_TIMESTAMP, SHARD_END`,
      );
    }
  }

  const pending = string(A.pendingCheckpoint);
  if (pending !== undefined && pending !== '') {
    if (!isSequenceNumber(pending) && !isSentinel(pending)) {
      throw bad(A.pendingCheckpoint, `is '${pending}', expected a decimal sequence number or SHARD_END`);
    }
    const pendingSub = count(A.pendingCheckpointSubSequenceNumber);
    lease.pendingCheckpoint = isSentinel(pending)
      ? pending
      : pendingSub === undefined
        ? { sequenceNumber: pending }
        : { sequenceNumber: pending, subSequenceNumber: pendingSub };
  }

  const startingHashKey = string(A.startingHashKey);
  const endingHashKey = string(A.endingHashKey);
  if (startingHashKey !== undefined && endingHashKey !== undefined)
    lease.hashKeyRange = { startingHashKey, endingHashKey };
  return lease;
}

/**
 * What the worker holding a shard's processor last reported into its lease item (temporal-kcl's load reports; Java KCL
 * 3.x writes `throughputKBps` too). Read leniently: a value of another type is left out, never an error.
 */
export interface LeaseReport {
  /** `temporalKclWorker`: the own task queue of the worker holding the processor. */
  worker?: string;
  /** `throughputKBps`. */
  kbps?: number;
  /** `temporalKclRecordsPerSec`. */
  recordsPerSec?: number;
  /** `temporalKclReportedAt` (epoch ms). */
  reportedAt?: number;
  /** `temporalKclMaxShards`: the reporting worker's cap. */
  maxShards?: number;
}

/** The load report of a lease item (see {@link LeaseReport}). */
export function parseReport(item: Item): LeaseReport {
  const number = (attribute: string): number | undefined => {
    const n = item[attribute]?.N;
    const value = n === undefined ? Number.NaN : Number(n);
    return Number.isFinite(value) && value >= 0 ? value : undefined;
  };
  const worker = item[A.temporalKclWorker]?.S;
  const kbps = number(A.throughputKBps);
  const recordsPerSec = number(A.temporalKclRecordsPerSec);
  const reportedAt = number(A.temporalKclReportedAt);
  const maxShards = number(A.temporalKclMaxShards);
  return {
    ...(worker ? { worker } : {}),
    ...(kbps !== undefined ? { kbps } : {}),
    ...(recordsPerSec !== undefined ? { recordsPerSec } : {}),
    ...(reportedAt !== undefined ? { reportedAt } : {}),
    ...(maxShards !== undefined ? { maxShards } : {}),
  };
}

/** The `checkpoint` and `checkpointSubSequenceNumber` values KCL stores for a checkpoint. */
export function checkpointValue(checkpoint: Checkpoint, shardId: string): { value: string; sub: number } {
  if (typeof checkpoint === 'string') {
    if (!isSentinel(checkpoint))
      throw new InvalidLeaseRequestError(shardId, `checkpoint '${String(checkpoint)}' is not a sentinel`);
    return { value: checkpoint, sub: 0 };
  }
  const { sequenceNumber, subSequenceNumber = 0 } = checkpoint;
  if (typeof sequenceNumber !== 'string' || !isSequenceNumber(sequenceNumber)) {
    throw new InvalidLeaseRequestError(
      shardId,
      `checkpoint sequence number '${String(sequenceNumber)}' is not decimal`,
    );
  }
  if (!Number.isSafeInteger(subSequenceNumber) || subSequenceNumber < 0) {
    throw new InvalidLeaseRequestError(
      shardId,
      `sub-sequence number ${subSequenceNumber} is not a non-negative integer`,
    );
  }
  return { value: sequenceNumber, sub: subSequenceNumber };
}

export function requireNonEmpty(value: string, what: string, shardId: string): void {
  if (typeof value !== 'string' || value.length === 0) {
    throw new InvalidLeaseRequestError(shardId, `${what} must be a non-empty string`);
  }
}

export function requireCounter(counter: number, shardId: string): void {
  if (!Number.isSafeInteger(counter) || counter < 0) {
    throw new InvalidLeaseRequestError(shardId, `counter must be a non-negative integer, got ${counter}`);
  }
}

export function key(shardId: string): Item {
  return { [A.leaseKey]: { S: shardId } };
}

export function typeOf(value: AttributeValue): string {
  return (
    Object.keys(value).find(
      (k) => k !== '$unknown' && (value as unknown as Record<string, unknown>)[k] !== undefined,
    ) ?? '?'
  );
}

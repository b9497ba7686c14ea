/**
 * Checkpoints and shard ownership in a DynamoDB table that Java KCL can read and write: the same item layout as KCL's
 * `DynamoDBLeaseSerializer`, so an application moving from KCL to temporal-kcl (or back) keeps its position.
 *
 * Fencing: every write is conditional on `leaseCounter` (and, for checkpoints and releases, on `leaseOwner`) and
 * increments `leaseCounter`. A stale activity attempt, from an older owner or from the same owner with an older counter,
 * can therefore neither move a checkpoint backwards nor overwrite a newer owner's. A failed condition never leaves this
 * module as a `ConditionalCheckFailedException`: it becomes a retry, an idempotent success, `undefined` or a
 * {@link CheckpointConflictError}.
 *
 * Pending checkpoints (`pendingCheckpoint`, `pendingCheckpointSubSequenceNumber`) are written by
 * {@link CheckpointTable.prepareCheckpoint} and removed, with `pendingCheckpointState`, by every checkpoint, as Java KCL's
 * `DynamoDBLeaseSerializer` does. Attributes KCL writes that this module does not own (`checkpointOwner`, ...) are never
 * read, written or removed: every write is an UpdateItem of named attributes, or a PutItem of a brand-new item.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { HashKeyRange } from '../consumer-types';
import {
  BatchGetItemCommand,
  CreateTableCommand,
  DescribeTableCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  ScanCommand,
  type TableDescription,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import {
  CheckpointConflictError,
  InvalidConfigError,
  InvalidLeaseRequestError,
  LeaseContendedError,
  LeaseHeldByLiveWorkerError,
  LeaseTableMissingError,
  LeaseTableSchemaError,
} from '../errors';
import {
  A,
  checkpointValue,
  type Item,
  key,
  type Lease,
  type LeaseReport,
  parseLease,
  parseReport,
  requireCounter,
  requireNonEmpty,
} from './lease-item';
import { leaseTableNameProblem } from '../ids';
import { type Checkpoint, type ExtendedSequenceNumber, isSequenceNumber } from '../positions';

export type { HashKeyRange, Lease, LeaseReport };

export interface CheckpointTableOptions {
  dynamoDb: DynamoDBClient;
  /** The lease table; by convention the application name, as in KCL. */
  tableName: string;
  /**
   * How long {@link CheckpointTable.ensureTable} waits for a table to become ACTIVE.
   * @default 120000
   */
  tableActiveTimeoutMs?: number;
  /**
   * Set for a multi-stream table: the stream identifier `<account>:<stream>:<creation epoch>` (Java KCL's
   * `StreamIdentifier`). Lease keys are then `<stream identifier>:<shard id>` and new items carry `streamName` (the
   * identifier) and `shardId`, as Java KCL's `DynamoDBMultiStreamLeaseSerializer` writes them; listings return this
   * stream's leases only. Absent: a single-stream table, lease key = shard id (Java KCL's default layout).
   */
  streamIdentifier?: string;
  /** Refuse to take leases that a live worker of another consumer (Java KCL) holds. @default no guard */
  liveOwnerGuard?: LiveOwnerGuard;
}

/**
 * A lease whose owner is not a temporal-kcl consumer is taken only once it is stale: its counter (which KCL workers
 * increment to renew) did not move for `failoverTimeMs`, KCL's own rule for expired leases.
 */
export interface LiveOwnerGuard {
  /** KCL's failoverTimeMillis. @default 10000 */
  failoverTimeMs?: number;
  /** Take the lease even from a live owner. @default false */
  force?: boolean;
}

/** Owners temporal-kcl writes: `<workflow id>#<first run id>`, the workflow id starting with `temporal-kcl/`. */
function isTemporalKclOwner(owner: string): boolean {
  return /^temporal-kcl\/.+#.+$/.test(owner);
}

export interface ClaimInput {
  shardId: string;
  /** The new owner, e.g. the consuming workflow's id. */
  owner: string;
  /** Written as `parentShardId` (a string set) when non-empty. */
  parentShardIds?: string[];
  /** Written as `startingHashKey` / `endingHashKey` when given. */
  hashKeyRange?: HashKeyRange;
}

export interface CheckpointInput {
  shardId: string;
  /** The owner the lease must still have. */
  owner: string;
  /** The counter the lease must still have: the one the last claim or checkpoint returned. */
  counter: number;
  /** A position (sub-sequence number absent = 0) or a sentinel such as SHARD_END. */
  checkpoint: Checkpoint;
  /** Written as `childShardIds` when non-empty (with SHARD_END). */
  childShardIds?: string[];
}

export interface PrepareCheckpointInput {
  shardId: string;
  /** The owner the lease must still have. */
  owner: string;
  /** The counter the lease must still have: the one the last claim or write returned. */
  counter: number;
  /** The position to prepare (sub-sequence number absent = 0). */
  pendingCheckpoint: ExtendedSequenceNumber;
}

export interface LeaseReportInput {
  shardId: string;
  /** The owner the lease must still have. */
  owner: string;
  /** The own task queue of the worker holding the shard's processor (`temporalKclWorker`). */
  worker: string;
  /** KB/s delivered (one-minute average; `throughputKBps`). Absent: not measured yet, the stored value stays. */
  kbps?: number;
  /** User records/s delivered (one-minute average; `temporalKclRecordsPerSec`). Absent: the stored value stays. */
  recordsPerSec?: number;
  /** The worker's `maxShardsPerWorker` (`temporalKclMaxShards`); absent: unlimited (the attribute is removed). */
  maxShards?: number;
  /** `temporalKclReportedAt` (epoch ms). @default now */
  reportedAt?: number;
}

export interface ReleaseInput {
  shardId: string;
  owner: string;
  counter: number;
}

/** Claims re-read and retry this often when a concurrent write changes the item between read and write. */
const MAX_CLAIM_ATTEMPTS = 10;
/** BatchGetItem accepts at most this many keys. */
const BATCH_GET_LIMIT = 100;
/** BatchGetItem calls per chunk before the still unprocessed keys are read one by one. */
const MAX_BATCH_GET_ATTEMPTS = 5;

/** The lease table of one application: checkpoints and ownership of its shards. */
export class CheckpointTable {
  readonly tableName: string;
  /** The stream identifier of a multi-stream table; undefined for a single-stream one. */
  readonly streamIdentifier: string | undefined;
  private readonly dynamoDb: DynamoDBClient;
  private readonly tableActiveTimeoutMs: number;
  private readonly liveOwnerGuard: LiveOwnerGuard | undefined;
  private ensured: Promise<void> | undefined;

  constructor(options: CheckpointTableOptions) {
    const tableProblem = leaseTableNameProblem(options.tableName);
    if (tableProblem) throw new InvalidConfigError(tableProblem);
    this.dynamoDb = options.dynamoDb;
    this.tableName = options.tableName;
    this.tableActiveTimeoutMs = options.tableActiveTimeoutMs ?? 120_000;
    this.streamIdentifier = options.streamIdentifier;
    this.liveOwnerGuard = options.liveOwnerGuard;
  }

  /** The item key of a shard's lease: the shard id, or `<stream identifier>:<shard id>` in a multi-stream table. */
  leaseKey(shardId: string): string {
    return this.streamIdentifier === undefined ? shardId : `${this.streamIdentifier}:${shardId}`;
  }

  /** The attributes every item of this stream carries beside its key (multi-stream tables only). */
  private streamAttributes(shardId: string): Item {
    return this.streamIdentifier === undefined
      ? {}
      : { [A.streamName]: { S: this.streamIdentifier }, [A.shardId]: { S: shardId } };
  }

  /**
   * Makes sure the lease table exists and is usable: creates it (hash key `leaseKey` of type S, PAY_PER_REQUEST) when
   * missing, tolerating a concurrent creator, and waits until it is ACTIVE. Resolves once per instance; a later call
   * makes no request (unless the table was found missing since).
   *
   * @throws {@link LeaseTableSchemaError} when the table exists with another key schema; the table is left untouched.
   * @throws {@link LeaseTableMissingError} when the table does not become ACTIVE within `tableActiveTimeoutMs`.
   */
  ensureTable(): Promise<void> {
    this.ensured ??= this.createIfMissing().catch((error: unknown) => {
      this.ensured = undefined;
      throw error;
    });
    return this.ensured;
  }

  /**
   * Reads one lease with a consistent read.
   *
   * @returns the lease, or undefined when the shard has no item.
   * @throws {@link LeaseTableSchemaError} when the item cannot be read as a lease.
   */
  async getLease(shardId: string): Promise<Lease | undefined> {
    requireNonEmpty(shardId, 'shardId', shardId);
    const item = await this.readItem(shardId);
    return item && this.parse(item);
  }

  /**
   * Reads several leases with consistent reads (BatchGetItem in chunks of 100, retrying unprocessed keys a few times and
   * then reading what is left one by one), e.g. both parents of a merged shard.
   *
   * @returns the leases found, by shard id; shards without an item are absent from the map.
   */
  async getLeases(shardIds: string[]): Promise<Map<string, Lease>> {
    const unique = [...new Set(shardIds)];
    for (const shardId of unique) requireNonEmpty(shardId, 'shardId', shardId);
    const leases = new Map<string, Lease>();
    for (let start = 0; start < unique.length; start += BATCH_GET_LIMIT) {
      let keys = unique.slice(start, start + BATCH_GET_LIMIT).map((shardId) => key(this.leaseKey(shardId)));
      for (let attempt = 1; keys.length > 0 && attempt <= MAX_BATCH_GET_ATTEMPTS; attempt++) {
        if (attempt > 1) await sleep(backoffMs(attempt));
        const result = await this.call(() =>
          this.dynamoDb.send(
            new BatchGetItemCommand({ RequestItems: { [this.tableName]: { Keys: keys, ConsistentRead: true } } }),
          ),
        );
        for (const item of result.Responses?.[this.tableName] ?? []) {
          const lease = this.parse(item);
          leases.set(lease.shardId, lease);
        }
        keys = result.UnprocessedKeys?.[this.tableName]?.Keys ?? [];
      }
      // Still throttled: single reads, whose errors (throttling included) reach the caller as they are.
      for (const remaining of keys) {
        const leaseKey = remaining[A.leaseKey]?.S ?? '';
        const shardId = unique.find((id) => this.leaseKey(id) === leaseKey) ?? leaseKey;
        const item = await this.readItem(shardId);
        if (item) leases.set(shardId, this.parse(item));
      }
    }
    return leases;
  }

  /** Every lease in the table (a paginated, consistent Scan), ordered by shard id. For status commands. */
  async listLeases(): Promise<Lease[]> {
    return (await this.scanItems()).map((item) => this.parse(item)).sort(byShardId);
  }

  /**
   * Every lease with its worker's load report (one paginated, consistent Scan), ordered by shard id: where each shard's
   * processor lives and how busy it is, for the fleet view.
   */
  async listLeaseReports(): Promise<Array<Lease & { report: LeaseReport }>> {
    return (await this.scanItems()).map((item) => ({ ...this.parse(item), report: parseReport(item) })).sort(byShardId);
  }

  /**
   * Writes the load report of the worker holding the shard's processor: `throughputKBps`, `temporalKclRecordsPerSec`,
   * `temporalKclWorker`, `temporalKclMaxShards` (removed when the worker has no cap) and `temporalKclReportedAt`,
   * provided `owner` still holds the lease. The counter is left alone: a report is not a renewal (Java KCL workers
   * watching the lease must not take it for one), and it fences nothing.
   *
   * @returns false when the lease is no longer `owner`'s (or is gone): the pin should stop reporting.
   */
  async report(input: LeaseReportInput): Promise<boolean> {
    const { shardId, owner } = input;
    requireNonEmpty(shardId, 'shardId', shardId);
    requireNonEmpty(owner, 'owner', shardId);
    requireNonEmpty(input.worker, 'worker', shardId);
    const rate = (value: number, what: string) => {
      if (!Number.isFinite(value) || value < 0)
        throw new InvalidLeaseRequestError(shardId, `${what} must be a non-negative number, got ${value}`);
      // A Double for Java KCL 3.x (DynamoDBLeaseSerializer reads throughputKBps with Double.parseDouble).
      return { N: String(Math.round(value * 1000) / 1000) };
    };
    if (input.maxShards !== undefined && (!Number.isSafeInteger(input.maxShards) || input.maxShards < 1)) {
      throw new InvalidLeaseRequestError(shardId, `maxShards must be a positive integer, got ${input.maxShards}`);
    }
    const names: Record<string, string> = {
      '#owner': A.leaseOwner,
      '#kbps': A.throughputKBps,
      '#rps': A.temporalKclRecordsPerSec,
      '#worker': A.temporalKclWorker,
      '#max': A.temporalKclMaxShards,
      '#at': A.temporalKclReportedAt,
    };
    const values: Item = {
      ':owner': { S: owner },
      ':worker': { S: input.worker },
      ':at': { N: String(Math.round(input.reportedAt ?? Date.now())) },
    };
    let update = 'SET #worker = :worker, #at = :at';
    if (input.kbps !== undefined) {
      update += ', #kbps = :kbps';
      values[':kbps'] = rate(input.kbps, 'kbps');
    } else delete names['#kbps'];
    if (input.recordsPerSec !== undefined) {
      update += ', #rps = :rps';
      values[':rps'] = rate(input.recordsPerSec, 'recordsPerSec');
    } else delete names['#rps'];
    if (input.maxShards !== undefined) {
      update += ', #max = :max';
      values[':max'] = { N: String(input.maxShards) };
    } else {
      update += ' REMOVE #max';
    }
    try {
      await this.call(() =>
        this.dynamoDb.send(
          new UpdateItemCommand({
            TableName: this.tableName,
            Key: key(this.leaseKey(shardId)),
            UpdateExpression: update,
            ConditionExpression: '#owner = :owner',
            ExpressionAttributeNames: names,
            ExpressionAttributeValues: values,
          }),
        ),
      );
      return true;
    } catch (error) {
      if (isConditionalCheckFailed(error)) return false;
      throw error;
    }
  }

  /**
   * Takes the shard for `owner`: creates the item (counter 1) or increments the counter of the existing one, sets the
   * owner, counts an owner switch when another owner held it, and writes parents and hash key range when given. The
   * checkpoint is left as it is. A re-claim by the current owner still increments the counter.
   *
   * @returns the lease as written; its `counter` is what the next {@link checkpoint} must present.
   * @throws {@link LeaseContendedError} when concurrent writes changed the item under every attempt.
   */
  async claim(input: ClaimInput): Promise<Lease> {
    const { shardId, owner } = input;
    requireNonEmpty(shardId, 'shardId', shardId);
    requireNonEmpty(owner, 'owner', shardId);
    const parents = input.parentShardIds ?? [];
    for (const parent of parents) requireNonEmpty(parent, 'parentShardIds', shardId);
    if (input.hashKeyRange) {
      const { startingHashKey, endingHashKey } = input.hashKeyRange;
      if (!isSequenceNumber(startingHashKey) || !isSequenceNumber(endingHashKey)) {
        throw new InvalidLeaseRequestError(
          shardId,
          `hash keys must be decimal, got ${startingHashKey}..${endingHashKey}`,
        );
      }
    }
    const claimed: Item = { [A.leaseOwner]: { S: owner } };
    if (parents.length > 0) claimed[A.parentShardId] = { SS: [...new Set(parents)] };
    if (input.hashKeyRange) {
      claimed[A.startingHashKey] = { S: input.hashKeyRange.startingHashKey };
      claimed[A.endingHashKey] = { S: input.hashKeyRange.endingHashKey };
    }

    let guarded = false;
    for (let attempt = 1; attempt <= MAX_CLAIM_ATTEMPTS; attempt++) {
      if (attempt > 1) await sleep(backoffMs(attempt));
      let stored = await this.readItem(shardId);
      if (!guarded && stored) {
        guarded = true;
        stored = await this.checkNotLive(this.parse(stored), owner, stored);
      }
      try {
        if (stored === undefined) {
          const item: Item = {
            ...key(this.leaseKey(shardId)),
            ...this.streamAttributes(shardId),
            ...claimed,
            [A.leaseCounter]: { N: '1' },
            [A.ownerSwitchesSinceCheckpoint]: { N: '0' },
          };
          if (await this.putNew(item)) return this.parse(item);
          continue; // someone created it meanwhile: read it and claim it
        }
        const current = this.parse(stored);
        const switched = current.owner !== undefined && current.owner !== owner;
        const sets: Item = {
          ...claimed,
          ...this.streamAttributes(shardId),
          [A.leaseCounter]: { N: String(current.counter + 1) },
          [A.ownerSwitchesSinceCheckpoint]: {
            N: String(current.ownerSwitchesSinceCheckpoint + (switched ? 1 : 0)),
          },
        };
        const names: Record<string, string> = {};
        const values: Item = {};
        const assignments = Object.entries(sets).map(([attribute, value], i) => {
          names[`#a${i}`] = attribute;
          values[`:a${i}`] = value;
          return `#a${i} = :a${i}`;
        });
        names['#leaseKey'] = A.leaseKey;
        names['#leaseCounter'] = A.leaseCounter;
        let condition: string;
        if (stored[A.leaseCounter] === undefined) {
          condition = 'attribute_exists(#leaseKey) AND attribute_not_exists(#leaseCounter)';
        } else {
          condition = 'attribute_exists(#leaseKey) AND #leaseCounter = :oldCounter';
          values[':oldCounter'] = { N: String(current.counter) };
        }
        const result = await this.call(() =>
          this.dynamoDb.send(
            new UpdateItemCommand({
              TableName: this.tableName,
              Key: key(this.leaseKey(shardId)),
              UpdateExpression: `SET ${assignments.join(', ')}`,
              ConditionExpression: condition,
              ExpressionAttributeNames: names,
              ExpressionAttributeValues: values,
              ReturnValues: 'ALL_NEW',
            }),
          ),
        );
        return this.parse(result.Attributes ?? { ...stored, ...sets });
      } catch (error) {
        if (!isConditionalCheckFailed(error)) throw error;
        // Someone wrote the item between our read and our write: read again and retry.
      }
    }
    throw new LeaseContendedError(shardId, owner, MAX_CLAIM_ATTEMPTS);
  }

  /**
   * Confirms that `owner` still holds the lease and takes a new counter: increments `leaseCounter` on condition of the
   * owner alone. A consumer whose worker may have written checkpoints it never heard about (the worker died) renews
   * before its next write; a stale writer of the same owner, still holding the older counter, is fenced out by it.
   *
   * @returns the lease as it now is (its checkpoint is the durable one).
   * @throws {@link CheckpointConflictError} when another owner holds the lease, or it is gone.
   */
  async renew(input: { shardId: string; owner: string }): Promise<Lease> {
    const { shardId, owner } = input;
    requireNonEmpty(shardId, 'shardId', shardId);
    requireNonEmpty(owner, 'owner', shardId);
    try {
      const result = await this.call(() =>
        this.dynamoDb.send(
          new UpdateItemCommand({
            TableName: this.tableName,
            Key: key(this.leaseKey(shardId)),
            UpdateExpression: 'SET #counter = #counter + :one',
            ConditionExpression: '#owner = :owner AND attribute_exists(#counter)',
            ExpressionAttributeNames: { '#owner': A.leaseOwner, '#counter': A.leaseCounter },
            ExpressionAttributeValues: { ':owner': { S: owner }, ':one': { N: '1' } },
            ReturnValues: 'ALL_NEW',
          }),
        ),
      );
      if (result.Attributes) return this.parse(result.Attributes);
      const stored = await this.readItem(shardId);
      if (stored) return this.parse(stored);
    } catch (error) {
      if (!isConditionalCheckFailed(error)) throw error;
    }
    const actual = await this.getLease(shardId);
    throw new CheckpointConflictError(shardId, owner, 0, actual?.owner, actual?.counter);
  }

  /**
   * Creates the lease of a shard that has no item yet, without an owner, at `checkpoint` (counter 0, as KCL creates
   * leases): an imported position that the first consumer to claim the shard resumes from.
   *
   * @returns true when written; false when the shard already has an item (left untouched).
   */
  async createLease(input: { shardId: string; checkpoint: Checkpoint; parentShardIds?: string[] }): Promise<boolean> {
    const { shardId } = input;
    requireNonEmpty(shardId, 'shardId', shardId);
    const { value, sub } = checkpointValue(input.checkpoint, shardId);
    const parents = [...new Set(input.parentShardIds ?? [])];
    const item: Item = {
      ...key(this.leaseKey(shardId)),
      ...this.streamAttributes(shardId),
      [A.leaseCounter]: { N: '0' },
      [A.checkpoint]: { S: value },
      [A.checkpointSubSequenceNumber]: { N: String(sub) },
      [A.ownerSwitchesSinceCheckpoint]: { N: '0' },
      ...(parents.length > 0 ? { [A.parentShardId]: { SS: parents } } : {}),
    };
    return this.putNew(item);
  }

  /**
   * Records a checkpoint, provided `owner` still holds the lease at `counter`: sets `checkpoint` and
   * `checkpointSubSequenceNumber` (0 for sentinels and plain records), resets `ownerSwitchesSinceCheckpoint`, removes a
   * pending checkpoint (`pendingCheckpoint`, `pendingCheckpointSubSequenceNumber`, `pendingCheckpointState`: committed
   * or discarded, as in Java KCL), writes `childShardIds` when given and increments the counter. A retry of a write that already applied (same owner, counter
   * + 1, same checkpoint) succeeds again.
   *
   * @returns the new counter, for the next checkpoint.
   * @throws {@link CheckpointConflictError} when another owner or a newer attempt moved the lease on.
   */
  async checkpoint(input: CheckpointInput): Promise<{ counter: number }> {
    const { shardId, owner, counter } = input;
    requireNonEmpty(shardId, 'shardId', shardId);
    requireNonEmpty(owner, 'owner', shardId);
    requireCounter(counter, shardId);
    const { value, sub } = checkpointValue(input.checkpoint, shardId);
    const children = [...new Set(input.childShardIds ?? [])];
    for (const child of children) requireNonEmpty(child, 'childShardIds', shardId);

    const names: Record<string, string> = {
      '#owner': A.leaseOwner,
      '#counter': A.leaseCounter,
      '#checkpoint': A.checkpoint,
      '#sub': A.checkpointSubSequenceNumber,
      '#switches': A.ownerSwitchesSinceCheckpoint,
      '#pending': A.pendingCheckpoint,
      '#pendingSub': A.pendingCheckpointSubSequenceNumber,
      '#pendingState': A.pendingCheckpointState,
    };
    const values: Item = {
      ':owner': { S: owner },
      ':counter': { N: String(counter) },
      ':next': { N: String(counter + 1) },
      ':checkpoint': { S: value },
      ':sub': { N: String(sub) },
      ':zero': { N: '0' },
    };
    let update = 'SET #checkpoint = :checkpoint, #sub = :sub, #counter = :next, #switches = :zero';
    if (children.length > 0) {
      names['#children'] = A.childShardIds;
      values[':children'] = { SS: children };
      update += ', #children = :children';
    }
    update += ' REMOVE #pending, #pendingSub, #pendingState';
    try {
      await this.call(() =>
        this.dynamoDb.send(
          new UpdateItemCommand({
            TableName: this.tableName,
            Key: key(this.leaseKey(shardId)),
            UpdateExpression: update,
            ConditionExpression: '#owner = :owner AND #counter = :counter',
            ExpressionAttributeNames: names,
            ExpressionAttributeValues: values,
          }),
        ),
      );
      return { counter: counter + 1 };
    } catch (error) {
      if (!isConditionalCheckFailed(error)) throw error;
    }
    const item = await this.readItem(shardId);
    const actual = item && this.parse(item);
    const alreadyApplied =
      actual?.owner === owner &&
      actual.counter === counter + 1 &&
      actual.checkpoint !== undefined &&
      (typeof actual.checkpoint === 'string'
        ? actual.checkpoint === value
        : actual.checkpoint.sequenceNumber === value && (actual.checkpoint.subSequenceNumber ?? 0) === sub);
    if (alreadyApplied) return { counter: counter + 1 };
    throw new CheckpointConflictError(shardId, owner, counter, actual?.owner, actual?.counter);
  }

  /**
   * Prepares a checkpoint (the first phase of Java KCL's two-phase checkpoint), provided `owner` still holds the lease at
   * `counter`: sets `pendingCheckpoint` and `pendingCheckpointSubSequenceNumber`, removes `pendingCheckpointState`
   * (this library stores no application state with it) and increments the counter. The checkpoint itself is left as it
   * is; the next {@link checkpoint} commits or discards the pending one. A retry of a write that already applied (same
   * owner, counter + 1, same pending checkpoint) succeeds again.
   *
   * @returns the new counter, for the next write.
   * @throws {@link CheckpointConflictError} when another owner or a newer attempt moved the lease on.
   */
  async prepareCheckpoint(input: PrepareCheckpointInput): Promise<{ counter: number }> {
    const { shardId, owner, counter } = input;
    requireNonEmpty(shardId, 'shardId', shardId);
    requireNonEmpty(owner, 'owner', shardId);
    requireCounter(counter, shardId);
    const { value, sub } = checkpointValue(input.pendingCheckpoint, shardId);
    try {
      await this.call(() =>
        this.dynamoDb.send(
          new UpdateItemCommand({
            TableName: this.tableName,
            Key: key(this.leaseKey(shardId)),
            UpdateExpression:
              'SET #pending = :pending, #pendingSub = :pendingSub, #counter = :next REMOVE #pendingState',
            ConditionExpression: '#owner = :owner AND #counter = :counter',
            ExpressionAttributeNames: {
              '#owner': A.leaseOwner,
              '#counter': A.leaseCounter,
              '#pending': A.pendingCheckpoint,
              '#pendingSub': A.pendingCheckpointSubSequenceNumber,
              '#pendingState': A.pendingCheckpointState,
            },
            ExpressionAttributeValues: {
              ':owner': { S: owner },
              ':counter': { N: String(counter) },
              ':next': { N: String(counter + 1) },
              ':pending': { S: value },
              ':pendingSub': { N: String(sub) },
            },
          }),
        ),
      );
      return { counter: counter + 1 };
    } catch (error) {
      if (!isConditionalCheckFailed(error)) throw error;
    }
    const item = await this.readItem(shardId);
    const actual = item && this.parse(item);
    const pending = actual?.pendingCheckpoint;
    const alreadyApplied =
      actual?.owner === owner &&
      actual.counter === counter + 1 &&
      typeof pending === 'object' &&
      pending.sequenceNumber === value &&
      (pending.subSequenceNumber ?? 0) === sub;
    if (alreadyApplied) return { counter: counter + 1 };
    throw new CheckpointConflictError(shardId, owner, counter, actual?.owner, actual?.counter);
  }

  /**
   * Gives the shard up: removes `leaseOwner` (and the worker's load report but `throughputKBps`) and increments the
   * counter, provided `owner` still holds it at `counter`. The checkpoint stays.
   *
   * @returns the new counter, or undefined when the lease had already moved on (another owner holds it, or it is gone).
   */
  async release(input: ReleaseInput): Promise<{ counter: number } | undefined> {
    const { shardId, owner, counter } = input;
    requireNonEmpty(shardId, 'shardId', shardId);
    requireNonEmpty(owner, 'owner', shardId);
    requireCounter(counter, shardId);
    try {
      await this.call(() =>
        this.dynamoDb.send(
          new UpdateItemCommand({
            TableName: this.tableName,
            Key: key(this.leaseKey(shardId)),
            // No worker holds the shard's processor any more: its report goes too (KCL's throughputKBps stays, the
            // shard's last known load).
            UpdateExpression: 'SET #counter = :next REMOVE #owner, #worker, #max, #rps, #at',
            ConditionExpression: '#owner = :owner AND #counter = :counter',
            ExpressionAttributeNames: {
              '#owner': A.leaseOwner,
              '#counter': A.leaseCounter,
              '#worker': A.temporalKclWorker,
              '#max': A.temporalKclMaxShards,
              '#rps': A.temporalKclRecordsPerSec,
              '#at': A.temporalKclReportedAt,
            },
            ExpressionAttributeValues: {
              ':owner': { S: owner },
              ':counter': { N: String(counter) },
              ':next': { N: String(counter + 1) },
            },
          }),
        ),
      );
      return { counter: counter + 1 };
    } catch (error) {
      if (!isConditionalCheckFailed(error)) throw error;
    }
    // A retried attempt whose first try applied finds the lease ownerless one counter on.
    const item = await this.readItem(shardId);
    const actual = item && this.parse(item);
    return actual && actual.owner === undefined && actual.counter === counter + 1
      ? { counter: counter + 1 }
      : undefined;
  }

  /**
   * With a guard, a lease held by an owner other than temporal-kcl is watched for the failover time: if its counter or
   * owner moves, a live KCL worker renews it and it is not taken. Returns the item as read last.
   */
  private async checkNotLive(current: Lease, claimant: string, stored: Item): Promise<Item> {
    const guard = this.liveOwnerGuard;
    const holder = current.owner;
    if (!guard || guard.force || !holder || holder === claimant || isTemporalKclOwner(holder)) return stored;
    const failoverTimeMs = guard.failoverTimeMs ?? 10_000;
    await sleep(failoverTimeMs);
    const again = await this.readItem(current.shardId);
    const later = again && this.parse(again);
    if (
      later?.owner !== undefined &&
      !isTemporalKclOwner(later.owner) &&
      (later.counter !== current.counter || later.owner !== holder)
    ) {
      throw new LeaseHeldByLiveWorkerError(
        this.tableName,
        current.shardId,
        later.owner,
        `leaseCounter moved from ${current.counter} to ${later.counter} within the failover time of ${failoverTimeMs} ms`,
      );
    }
    return again ?? stored;
  }

  private async createIfMissing(): Promise<void> {
    const deadline = Date.now() + this.tableActiveTimeoutMs;
    let createRequested = false;
    for (let attempt = 1; ; attempt++) {
      const table = await this.describeTable();
      if (table === undefined && !createRequested) {
        createRequested = true;
        try {
          await this.dynamoDb.send(
            new CreateTableCommand({
              TableName: this.tableName,
              AttributeDefinitions: [{ AttributeName: A.leaseKey, AttributeType: 'S' }],
              KeySchema: [{ AttributeName: A.leaseKey, KeyType: 'HASH' }],
              BillingMode: 'PAY_PER_REQUEST',
            }),
          );
        } catch (error) {
          // A concurrent creator got there first: wait for its table like for ours.
          if (!hasName(error, 'ResourceInUseException')) throw error;
        }
        continue;
      }
      if (table !== undefined) {
        this.checkKeySchema(table);
        if (table.TableStatus === 'ACTIVE' || table.TableStatus === 'UPDATING') return;
      }
      if (Date.now() >= deadline) {
        throw new LeaseTableMissingError(
          this.tableName,
          `not ACTIVE after ${this.tableActiveTimeoutMs} ms (status ${table?.TableStatus ?? 'absent'})`,
        );
      }
      await sleep(Math.min(20 * 2 ** Math.min(attempt, 10), 1_000));
    }
  }

  private async describeTable(): Promise<TableDescription | undefined> {
    try {
      const { Table } = await this.dynamoDb.send(new DescribeTableCommand({ TableName: this.tableName }));
      return Table;
    } catch (error) {
      if (hasName(error, 'ResourceNotFoundException')) return undefined;
      throw error;
    }
  }

  private checkKeySchema(table: TableDescription): void {
    const keys = table.KeySchema ?? [];
    const types = new Map((table.AttributeDefinitions ?? []).map((a) => [a.AttributeName, a.AttributeType]));
    const [only] = keys;
    if (
      keys.length === 1 &&
      only?.KeyType === 'HASH' &&
      only.AttributeName === A.leaseKey &&
      types.get(A.leaseKey) === 'S'
    ) {
      return;
    }
    const found = keys
      .map((k) => `${k.AttributeName} (${k.KeyType}, ${types.get(k.AttributeName) ?? '?'})`)
      .join(' + ');
    throw new LeaseTableSchemaError(
      this.tableName,
      `found key schema ${found || '(none)'}, but a KCL lease table needs exactly one key: ${A.leaseKey} (HASH, S); ` +
        'the table was left untouched (use another application name or table)',
    );
  }

  /** Writes a lease item that must not exist yet; false (nothing written) if the shard already has one. */
  private async putNew(item: Item): Promise<boolean> {
    try {
      await this.call(() =>
        this.dynamoDb.send(
          new PutItemCommand({
            TableName: this.tableName,
            Item: item,
            ConditionExpression: 'attribute_not_exists(#leaseKey)',
            ExpressionAttributeNames: { '#leaseKey': A.leaseKey },
          }),
        ),
      );
      return true;
    } catch (error) {
      if (isConditionalCheckFailed(error)) return false;
      throw error;
    }
  }

  /** Every item of this stream (a paginated, consistent Scan; a multi-stream table lists this stream's items only). */
  private async scanItems(): Promise<Item[]> {
    const items: Item[] = [];
    let exclusiveStartKey: Item | undefined;
    do {
      const startKey = exclusiveStartKey;
      const page = await this.call(() =>
        this.dynamoDb.send(
          new ScanCommand({ TableName: this.tableName, ConsistentRead: true, ExclusiveStartKey: startKey }),
        ),
      );
      for (const item of page.Items ?? []) {
        if (this.streamIdentifier !== undefined && item[A.streamName]?.S !== this.streamIdentifier) continue;
        items.push(item);
      }
      exclusiveStartKey = page.LastEvaluatedKey;
    } while (exclusiveStartKey);
    return items;
  }

  private async readItem(shardId: string): Promise<Item | undefined> {
    const { Item } = await this.call(() =>
      this.dynamoDb.send(
        new GetItemCommand({ TableName: this.tableName, Key: key(this.leaseKey(shardId)), ConsistentRead: true }),
      ),
    );
    return Item;
  }

  /** Runs one data-plane request, turning a missing table into {@link LeaseTableMissingError}. */
  private async call<T>(request: () => Promise<T>): Promise<T> {
    try {
      return await request();
    } catch (error) {
      if (!hasName(error, 'ResourceNotFoundException')) throw error;
      this.ensured = undefined; // the next ensureTable() looks again (and creates the table)
      throw new LeaseTableMissingError(this.tableName, 'table not found; ensureTable() creates it', { cause: error });
    }
  }

  private parse(item: Item): Lease {
    return parseLease(item, this.tableName, this.streamIdentifier);
  }
}

function byShardId(a: { shardId: string }, b: { shardId: string }): number {
  return a.shardId < b.shardId ? -1 : a.shardId > b.shardId ? 1 : 0;
}

function backoffMs(attempt: number): number {
  return Math.random() * Math.min(10 * 2 ** attempt, 500);
}

function hasName(error: unknown, name: string): boolean {
  return error instanceof Error && error.name === name;
}

function isConditionalCheckFailed(error: unknown): boolean {
  return hasName(error, 'ConditionalCheckFailedException');
}

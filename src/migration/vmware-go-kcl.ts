/**
 * Moving from vmware-go-kcl: its checkpoint table (`clientlibrary/checkpoint/dynamodb-checkpointer.go`: hash key
 * `ShardID`, `AssignedTo`, `LeaseTimeout` (RFC 3339, UTC), `Checkpoint` (the last processed sequence number, or
 * `SHARD_END`), `ParentShardId`, `ClaimRequest`) is read and its positions are written into a KCL-format lease table,
 * where temporal-kcl (or Java KCL) resumes right after them.
 *
 * vmware-go-kcl resumes AFTER_SEQUENCE_NUMBER its checkpoint: the whole Kinesis record is done, every user record of a
 * KPL aggregate included. KCL's format says the same with the aggregate's last sub-sequence number, so the record at the
 * checkpoint is read once to count its user records (when it has aged out of the stream, 0 is written: nothing is left
 * to re-deliver anyway).
 */
import { DescribeTableCommand, type DynamoDBClient, ScanCommand, type AttributeValue } from '@aws-sdk/client-dynamodb';
import { GetRecordsCommand, GetShardIteratorCommand, type KinesisClient } from '@aws-sdk/client-kinesis';
import { CheckpointTable } from '../checkpoint/checkpoint-table';
import type { Lease } from '../checkpoint/lease-item';
import { InvalidConfigError, LeaseHeldByLiveWorkerError, LeaseTableMissingError } from '../errors';
import { deaggregateRecords } from '../kinesis/deaggregate';
import { type Checkpoint, formatPosition, isSequenceNumber, SentinelCheckpoint } from '../positions';

/** vmware-go-kcl's attribute names (`checkpointer.go`). */
export const VMWARE_GO_KCL = {
  shardId: 'ShardID',
  assignedTo: 'AssignedTo',
  leaseTimeout: 'LeaseTimeout',
  checkpoint: 'Checkpoint',
  parentShardId: 'ParentShardId',
  claimRequest: 'ClaimRequest',
} as const;

/** One item of a vmware-go-kcl checkpoint table. */
export interface VmwareCheckpoint {
  shardId: string;
  checkpoint?: string;
  assignedTo?: string;
  leaseTimeout?: string;
  parentShardId?: string;
}

export type ImportAction = 'create' | 'unchanged' | 'conflict' | 'no-checkpoint';

export interface ImportEntry {
  shardId: string;
  /** vmware-go-kcl's `Checkpoint`, as stored. */
  source: string | undefined;
  /** The KCL checkpoint it becomes. */
  target: Checkpoint | undefined;
  /** What the import does (did) with it: create the lease; it exists with this checkpoint; it exists with another. */
  action: ImportAction;
  detail?: string;
}

function string(item: Record<string, AttributeValue>, name: string): string | undefined {
  return item[name]?.S;
}

/** Reads every item of a vmware-go-kcl checkpoint table, after checking that it is one. */
export async function readVmwareCheckpoints(dynamoDb: DynamoDBClient, tableName: string): Promise<VmwareCheckpoint[]> {
  let keys: string;
  try {
    const { Table } = await dynamoDb.send(new DescribeTableCommand({ TableName: tableName }));
    keys = (Table?.KeySchema ?? []).map((k) => `${k.AttributeName}/${k.KeyType}`).join(',');
  } catch (error) {
    if ((error as { name?: string }).name === 'ResourceNotFoundException') {
      throw new InvalidConfigError(
        `vmware-go-kcl table ${tableName} not found; check --table, --region and --dynamodb-endpoint`,
      );
    }
    throw error;
  }
  if (keys !== `${VMWARE_GO_KCL.shardId}/HASH`) {
    throw new InvalidConfigError(
      `table ${tableName} is not a vmware-go-kcl checkpoint table: its key is ${keys || '(none)'}, not ${VMWARE_GO_KCL.shardId}` +
        (keys === 'leaseKey/HASH' ? ' (it is a KCL lease table already: temporal-kcl reads it as it is)' : ''),
    );
  }
  const items: VmwareCheckpoint[] = [];
  let startKey: Record<string, AttributeValue> | undefined;
  do {
    const page = await dynamoDb.send(
      new ScanCommand({ TableName: tableName, ConsistentRead: true, ExclusiveStartKey: startKey }),
    );
    for (const item of page.Items ?? []) {
      const shardId = string(item, VMWARE_GO_KCL.shardId);
      if (!shardId) continue;
      const entry: VmwareCheckpoint = { shardId };
      const checkpoint = string(item, VMWARE_GO_KCL.checkpoint);
      const assignedTo = string(item, VMWARE_GO_KCL.assignedTo);
      const leaseTimeout = string(item, VMWARE_GO_KCL.leaseTimeout);
      const parentShardId = string(item, VMWARE_GO_KCL.parentShardId);
      if (checkpoint) entry.checkpoint = checkpoint;
      if (assignedTo) entry.assignedTo = assignedTo;
      if (leaseTimeout) entry.leaseTimeout = leaseTimeout;
      if (parentShardId) entry.parentShardId = parentShardId;
      items.push(entry);
    }
    startKey = page.LastEvaluatedKey;
  } while (startKey);
  return items.sort((a, b) => (a.shardId < b.shardId ? -1 : a.shardId > b.shardId ? 1 : 0));
}

/** The KCL checkpoint for a vmware-go-kcl one: the record's last user record (see the module comment). */
async function kclCheckpoint(
  kinesis: KinesisClient,
  streamName: string,
  entry: VmwareCheckpoint & { checkpoint: string },
): Promise<{ checkpoint: Checkpoint; detail?: string }> {
  if (entry.checkpoint === SentinelCheckpoint.SHARD_END) return { checkpoint: SentinelCheckpoint.SHARD_END };
  if (!isSequenceNumber(entry.checkpoint)) {
    throw new InvalidConfigError(
      `shard ${entry.shardId}: vmware-go-kcl checkpoint '${entry.checkpoint}' is neither a sequence number nor SHARD_END`,
    );
  }
  try {
    const { ShardIterator } = await kinesis.send(
      new GetShardIteratorCommand({
        StreamName: streamName,
        ShardId: entry.shardId,
        ShardIteratorType: 'AT_SEQUENCE_NUMBER',
        StartingSequenceNumber: entry.checkpoint,
      }),
    );
    const { Records = [] } = await kinesis.send(new GetRecordsCommand({ ShardIterator, Limit: 1 }));
    const record = Records[0];
    if (record?.SequenceNumber === entry.checkpoint) {
      const { records } = await deaggregateRecords([record]);
      const last = records.at(-1)?.subSequenceNumber;
      if (last !== undefined) {
        return {
          checkpoint: { sequenceNumber: entry.checkpoint, subSequenceNumber: last },
          detail: `a KPL aggregate of ${last + 1} user records`,
        };
      }
    }
    return { checkpoint: { sequenceNumber: entry.checkpoint, subSequenceNumber: 0 } };
  } catch (error) {
    return {
      checkpoint: { sequenceNumber: entry.checkpoint, subSequenceNumber: 0 },
      detail: `record not read (${error instanceof Error ? error.message : String(error)})`,
    };
  }
}

function samePosition(a: Checkpoint | undefined, b: Checkpoint | undefined): boolean {
  return formatPosition(a) === formatPosition(b);
}

export interface ImportOptions {
  dynamoDb: DynamoDBClient;
  kinesis: KinesisClient;
  /** The vmware-go-kcl checkpoint table. */
  sourceTable: string;
  /** The KCL-format lease table (created when missing). */
  leaseTable: string;
  streamName: string;
  /** Plan only: read both tables, write nothing. */
  dryRun?: boolean;
  /** Import even while a vmware-go-kcl worker holds a lease (its LeaseTimeout has not passed). */
  force?: boolean;
  now?: Date;
}

/**
 * Copies vmware-go-kcl positions into a KCL lease table. Idempotent: a shard whose lease exists with the same
 * checkpoint is `unchanged`; one with another checkpoint (a consumer has moved on, or another import) is a `conflict`
 * and is left as it is; only missing leases are created (with a conditional write).
 *
 * @throws {@link LeaseHeldByLiveWorkerError} when a vmware-go-kcl worker still holds a lease, unless `force`.
 */
export async function importVmwareCheckpoints(options: ImportOptions): Promise<ImportEntry[]> {
  if (options.sourceTable === options.leaseTable) {
    throw new InvalidConfigError(
      `the vmware-go-kcl table and the KCL lease table are both ${options.sourceTable}; name the lease table ` +
        'differently (--lease-table) and start the consumer with the same --table',
    );
  }
  const source = await readVmwareCheckpoints(options.dynamoDb, options.sourceTable);
  const now = (options.now ?? new Date()).getTime();
  const live = source.filter((entry) => entry.assignedTo && entry.leaseTimeout && Date.parse(entry.leaseTimeout) > now);
  const [first] = live;
  if (first && !options.force) {
    throw new LeaseHeldByLiveWorkerError(
      options.sourceTable,
      first.shardId,
      first.assignedTo ?? '?',
      `vmware-go-kcl LeaseTimeout ${first.leaseTimeout} has not passed` +
        (live.length > 1
          ? `; ${live.length - 1} more shard(s) held: ${live
              .slice(1)
              .map((e) => `${e.shardId} by ${e.assignedTo}`)
              .join(', ')}`
          : ''),
    );
  }
  const table = new CheckpointTable({ dynamoDb: options.dynamoDb, tableName: options.leaseTable });
  if (!options.dryRun) await table.ensureTable();
  let existing: Map<string, Lease>;
  try {
    existing = await table.getLeases(source.map((entry) => entry.shardId));
  } catch (error) {
    if (!(options.dryRun && error instanceof LeaseTableMissingError)) throw error;
    existing = new Map();
  }
  const entries: ImportEntry[] = [];
  for (const entry of source) {
    if (!entry.checkpoint) {
      entries.push({ shardId: entry.shardId, source: undefined, target: undefined, action: 'no-checkpoint' });
      continue;
    }
    const { checkpoint, detail } = await kclCheckpoint(options.kinesis, options.streamName, {
      ...entry,
      checkpoint: entry.checkpoint,
    });
    const planned = {
      shardId: entry.shardId,
      source: entry.checkpoint,
      target: checkpoint,
      ...(detail ? { detail } : {}),
    };
    const current = existing.get(entry.shardId);
    if (current) {
      entries.push({
        ...planned,
        action: samePosition(current.checkpoint, checkpoint) ? 'unchanged' : 'conflict',
        ...(samePosition(current.checkpoint, checkpoint)
          ? {}
          : { detail: `the lease table has ${formatPosition(current.checkpoint)}; left as it is` }),
      });
      continue;
    }
    if (options.dryRun) {
      entries.push({ ...planned, action: 'create' });
      continue;
    }
    const created = await table.createLease({
      shardId: entry.shardId,
      checkpoint,
      ...(entry.parentShardId ? { parentShardIds: [entry.parentShardId] } : {}),
    });
    if (created) entries.push({ ...planned, action: 'create' });
    else {
      const now = await table.getLease(entry.shardId);
      const same = samePosition(now?.checkpoint, checkpoint);
      entries.push({ ...planned, action: same ? 'unchanged' : 'conflict' });
    }
  }
  return entries;
}

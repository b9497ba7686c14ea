/**
 * The lease as a pinned processor holds it on its worker. Checkpoints are written here, fenced on the newest lease
 * counter this worker knows for the pin, so `checkpoint()` is durable when it resolves and a retried attempt on the same
 * worker carries on with the counter its earlier attempt reached.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { LeaseRef, ShardRef } from '../consumer-types';
import { type Checkpoint, type ExtendedSequenceNumber, type SentinelCheckpoint } from '../positions';
import { leaseTableFailure } from './aws-failures';
import { leaseTables } from './lease-tables';
import { countCheckpointRetry } from './metrics';
import type { ProcessorHost } from './processor-host';

export type { LeaseRef } from '../consumer-types';

/** Writes one pin's checkpoints. */
export interface LeaseWriter {
  /** The counter the next write presents (the newest one known). */
  readonly counter: number;
  /** The durable checkpoint as this worker last saw or wrote it (after a renewal: the table's). */
  readonly checkpoint: Checkpoint | undefined;
  /** Checkpoints written through this writer. */
  readonly writes: number;
  /** The pending checkpoint as this worker last saw or wrote it (after a renewal: the table's). */
  readonly pendingCheckpoint: Checkpoint | undefined;
  /**
   * Writes a pending checkpoint (`pendingCheckpoint`, `pendingCheckpointSubSequenceNumber`), fenced; resolves once it
   * is durable. The checkpoint is left as it is. @throws CheckpointConflictError when the lease is lost
   */
  prepare(position: ExtendedSequenceNumber): Promise<void>;
  /**
   * Writes a checkpoint (and removes a pending one), fenced; resolves once it is durable.
   * @throws CheckpointConflictError when the lease is lost
   */
  write(
    checkpoint: ExtendedSequenceNumber | typeof SentinelCheckpoint.SHARD_END,
    childShardIds?: string[],
  ): Promise<void>;
}

/**
 * A checkpoint write meets a DynamoDB fault (throttling, a 5xx, a reset): it is tried again with backoff, as the
 * workflow's own checkpoint activity is by its retry policy (100 ms doubling to 5 s), for up to about half a minute,
 * inside the processor's `checkpoint()` call — which resolves only once the checkpoint is durable. A lost lease or a
 * malformed request is not retried. (The table's own idempotence makes a retry of an applied write succeed.)
 */
async function retryTransient<T>(ref: ShardRef, write: () => Promise<T>): Promise<T> {
  for (let attempt = 1, delayMs = 100; ; attempt++, delayMs = Math.min(delayMs * 2, 5_000)) {
    try {
      return await write();
    } catch (error) {
      if (attempt >= CHECKPOINT_WRITE_ATTEMPTS || leaseTableFailure(error, 'checkpoint').nonRetryable) throw error;
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      countCheckpointRetry(ref);
    }
  }
}

/** Attempts of one checkpoint write before its error reaches the processor (about 30 s of backoff). */
const CHECKPOINT_WRITE_ATTEMPTS = 10;

/** Opens lease writers for pins on this worker (lease tables are ensured once per worker). */
export function pinLeases(dynamoDb: DynamoDBClient, host: ProcessorHost) {
  const table = leaseTables(dynamoDb);
  /**
   * The writer for `pin`: with `lease.renew`, the lease is renewed first (owner-conditioned; the workflow may not know
   * the newest counter), else the counter is the newer of the workflow's and the one this worker reached for the pin.
   * With `readPending` (and no renewal), the lease's pending checkpoint is read from the table (a consistent read).
   */
  return async (
    ref: ShardRef,
    pin: string,
    lease: LeaseRef,
    lastCheckpoint?: Checkpoint,
    options: { readPending?: boolean } = {},
  ): Promise<LeaseWriter> => {
    const leases = await table(lease.tableName, ref.streamIdentifier);
    let counter = Math.max(lease.counter, host.leaseCounter(ref, pin) ?? 0);
    let checkpoint = lastCheckpoint;
    let pendingCheckpoint: Checkpoint | undefined;
    if (lease.renew) {
      const renewed = await leases.renew({ shardId: ref.shardId, owner: lease.owner });
      counter = renewed.counter;
      checkpoint = renewed.checkpoint;
      pendingCheckpoint = renewed.pendingCheckpoint;
      host.setLeaseCounter(ref, pin, counter);
    } else if (options.readPending) {
      pendingCheckpoint = (await leases.getLease(ref.shardId))?.pendingCheckpoint;
    }
    let writes = 0;
    return {
      get counter() {
        return counter;
      },
      get checkpoint() {
        return checkpoint;
      },
      get writes() {
        return writes;
      },
      get pendingCheckpoint() {
        return pendingCheckpoint;
      },
      async prepare(position) {
        const written = await retryTransient(ref, () =>
          leases.prepareCheckpoint({ shardId: ref.shardId, owner: lease.owner, counter, pendingCheckpoint: position }),
        );
        counter = written.counter;
        pendingCheckpoint = position;
        host.setLeaseCounter(ref, pin, counter);
      },
      async write(position, childShardIds) {
        const written = await retryTransient(ref, () =>
          leases.checkpoint({
            shardId: ref.shardId,
            owner: lease.owner,
            counter,
            checkpoint: position,
            ...(childShardIds && childShardIds.length > 0 ? { childShardIds } : {}),
          }),
        );
        counter = written.counter;
        checkpoint = position;
        pendingCheckpoint = undefined;
        writes++;
        host.setLeaseCounter(ref, pin, counter);
      },
    };
  };
}

export type OpenLease = ReturnType<typeof pinLeases>;

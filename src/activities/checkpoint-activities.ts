import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { GetShardIteratorCommand, type KinesisClient } from '@aws-sdk/client-kinesis';
import type { HashKeyRange, ParentStatus, ShardRef } from '../consumer-types';
import { type Checkpoint, type ExtendedSequenceNumber, SentinelCheckpoint } from '../positions';
import { kinesisFailure, leaseTableFailure } from './aws-failures';
import type { LiveOwnerGuard } from '../checkpoint/checkpoint-table';
import { leaseTables } from './lease-tables';
import { countRetry, shardMetrics } from './metrics';

export interface CheckpointActivityDeps {
  dynamoDb: DynamoDBClient;
  kinesis: KinesisClient;
  /** Leases of live Java KCL workers are not taken (see LiveOwnerGuard). */
  liveOwnerGuard?: LiveOwnerGuard;
}

export interface ClaimLeaseInput {
  tableName: string;
  ref: ShardRef;
  owner: string;
  parentShardIds: string[];
  hashKeyRange?: HashKeyRange;
}

export interface CheckpointInput {
  tableName: string;
  ref: ShardRef;
  owner: string;
  /** The lease counter the writer holds; the write succeeds only if the table still shows it (fencing). */
  counter: number;
  checkpoint: ExtendedSequenceNumber | typeof SentinelCheckpoint.SHARD_END;
  childShardIds?: string[];
}

/** Activities on the lease table (DynamoDB), compatible with Java KCL's. */
export function createCheckpointActivities({ dynamoDb, kinesis, liveOwnerGuard }: CheckpointActivityDeps) {
  const table = leaseTables(dynamoDb, liveOwnerGuard);

  /** True while the shard is still in the stream (within retention). */
  const shardPresent = async (streamName: string, shardId: string): Promise<boolean> => {
    try {
      await kinesis.send(
        new GetShardIteratorCommand({ StreamName: streamName, ShardId: shardId, ShardIteratorType: 'TRIM_HORIZON' }),
      );
      return true;
    } catch (error) {
      if ((error as { name?: string }).name === 'ResourceNotFoundException') return false;
      throw kinesisFailure(error, `GetShardIterator on parent ${shardId} of stream ${streamName}`);
    }
  };

  return {
    /**
     * The state of every parent shard (both parents of a merge): ENDED once its lease is at SHARD_END; AGED_OUT once it
     * has left the stream (its records are gone, so nothing is left to wait for); otherwise IN_PROGRESS or NOT_STARTED.
     */
    async readParents(input: { tableName: string; ref: ShardRef; parentShardIds: string[] }): Promise<ParentStatus[]> {
      countRetry(input.ref);
      let leases;
      try {
        leases = await (await table(input.tableName, input.ref.streamIdentifier)).getLeases(input.parentShardIds);
      } catch (error) {
        throw leaseTableFailure(error, `reading the parents of ${input.ref.shardId}`);
      }
      return Promise.all(
        input.parentShardIds.map(async (shardId): Promise<ParentStatus> => {
          const lease = leases.get(shardId);
          const checkpoint = lease?.checkpoint;
          if (checkpoint === SentinelCheckpoint.SHARD_END) return { shardId, state: 'ENDED', checkpoint };
          if (!(await shardPresent(input.ref.streamName, shardId))) {
            return { shardId, state: 'AGED_OUT', ...(checkpoint ? { checkpoint } : {}) };
          }
          return lease
            ? { shardId, state: 'IN_PROGRESS', ...(checkpoint ? { checkpoint } : {}) }
            : { shardId, state: 'NOT_STARTED' };
        }),
      );
    },

    /** Takes the shard's lease for this consumer (creating the table on demand) and returns the counter and checkpoint. */
    async claimLease(
      input: ClaimLeaseInput,
    ): Promise<{ counter: number; checkpoint?: Checkpoint; ownerSwitchesSinceCheckpoint: number }> {
      countRetry(input.ref);
      try {
        const lease = await (
          await table(input.tableName, input.ref.streamIdentifier)
        ).claim({
          shardId: input.ref.shardId,
          owner: input.owner,
          parentShardIds: input.parentShardIds,
          ...(input.hashKeyRange ? { hashKeyRange: input.hashKeyRange } : {}),
        });
        return {
          counter: lease.counter,
          ...(lease.checkpoint ? { checkpoint: lease.checkpoint } : {}),
          ownerSwitchesSinceCheckpoint: lease.ownerSwitchesSinceCheckpoint,
        };
      } catch (error) {
        throw leaseTableFailure(error, `claiming the lease of ${input.ref.shardId} in table ${input.tableName}`);
      }
    },

    /**
     * Writes a checkpoint, fenced on owner and counter: a stale attempt or a former owner can neither move it backwards
     * nor overwrite a newer owner's (CheckpointConflict, not retried). Returns the new counter.
     */
    async checkpoint(input: CheckpointInput): Promise<{ counter: number }> {
      countRetry(input.ref);
      try {
        const result = await (
          await table(input.tableName, input.ref.streamIdentifier)
        ).checkpoint({
          shardId: input.ref.shardId,
          owner: input.owner,
          counter: input.counter,
          checkpoint: input.checkpoint,
          ...(input.childShardIds && input.childShardIds.length > 0 ? { childShardIds: input.childShardIds } : {}),
        });
        shardMetrics(input.ref).checkpoint();
        return result;
      } catch (error) {
        throw leaseTableFailure(error, `checkpointing ${input.ref.shardId} in table ${input.tableName}`);
      }
    },

    /** Gives the lease up (removes the owner) when a consumer stops; a lease someone else holds is left alone. */
    async releaseLease(input: { tableName: string; ref: ShardRef; owner: string; counter: number }): Promise<void> {
      try {
        await (
          await table(input.tableName, input.ref.streamIdentifier)
        ).release({ shardId: input.ref.shardId, owner: input.owner, counter: input.counter });
      } catch (error) {
        throw leaseTableFailure(error, `releasing the lease of ${input.ref.shardId} in table ${input.tableName}`);
      }
    },
  };
}

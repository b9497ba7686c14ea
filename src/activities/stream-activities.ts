import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { KinesisClient } from '@aws-sdk/client-kinesis';
import { ApplicationFailure } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import type { ShardDescription } from '../consumer-types';
import { FailureType } from '../failure-types';
import { SentinelCheckpoint } from '../positions';
import { kinesisFailure, leaseTableFailure } from './aws-failures';
import { listAllShards } from './kinesis-activities';
import { leaseTables } from './lease-tables';

export interface StreamActivityDeps {
  kinesis: KinesisClient;
  dynamoDb: DynamoDBClient;
  /** Temporal client, to check on shard consumers. */
  client?: Client;
}

export interface DiscoveredShards {
  /** Shards (after `afterShardId`, if given) whose lease is not at SHARD_END: each needs a consumer. */
  shards: ShardDescription[];
  /** Highest shard id listed (including ended ones), for the next incremental listing. */
  lastShardId?: string;
  /** Shards listed, ended ones included. */
  listed: number;
}

/** Activities of the stream consumer: shard discovery and a check on its shard consumers. */
export function createStreamActivities({ kinesis, dynamoDb, client }: StreamActivityDeps) {
  const table = leaseTables(dynamoDb);
  return {
    /**
     * Lists the stream's shards (all of them, or only those created after `afterShardId`) and leaves out those whose
     * lease is at SHARD_END. A missing stream is a non-retryable StreamNotFound.
     */
    async discoverShards(input: {
      streamName: string;
      tableName: string;
      afterShardId?: string;
    }): Promise<DiscoveredShards> {
      let listed: ShardDescription[];
      try {
        listed = await listAllShards(kinesis, input.streamName, input.afterShardId);
      } catch (error) {
        const failure = kinesisFailure(error, `ListShards of stream ${input.streamName}`);
        if (failure.type === FailureType.StreamNotFound) {
          throw ApplicationFailure.create({
            type: FailureType.StreamNotFound,
            message: `stream ${input.streamName} does not exist (or was deleted): ${failure.message}`,
            nonRetryable: true,
          });
        }
        throw failure;
      }
      let leases;
      try {
        leases = await (await table(input.tableName)).getLeases(listed.map((shard) => shard.shardId));
      } catch (error) {
        throw leaseTableFailure(error, `reading the leases of stream ${input.streamName}`);
      }
      const open = listed.filter((shard) => leases.get(shard.shardId)?.checkpoint !== SentinelCheckpoint.SHARD_END);
      const lastShardId =
        listed
          .map((shard) => shard.shardId)
          .sort()
          .at(-1) ?? input.afterShardId;
      return { shards: open, ...(lastShardId ? { lastShardId } : {}), listed: listed.length };
    },

    /** Of these workflow ids, those not running (closed, or never started). */
    async closedWorkflows(input: { workflowIds: string[] }): Promise<string[]> {
      if (!client) throw new Error('closedWorkflows needs a Temporal client in the activity dependencies');
      const statuses = await Promise.all(
        input.workflowIds.map(async (workflowId) => {
          try {
            const description = await client.workflow.getHandle(workflowId).describe();
            return description.status.name === 'RUNNING' ? undefined : workflowId;
          } catch (error) {
            if ((error as { name?: string }).name === 'WorkflowNotFoundError') return workflowId;
            throw error;
          }
        }),
      );
      return statuses.filter((id): id is string => id !== undefined);
    },
  };
}

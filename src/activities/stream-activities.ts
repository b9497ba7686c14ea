import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { KinesisClient } from '@aws-sdk/client-kinesis';
import { ApplicationFailure } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import type { ChildShard, ShardConsumerResult, ShardDescription } from '../consumer-types';
import { FailureType } from '../failure-types';
import { SentinelCheckpoint } from '../positions';
import { kinesisFailure, leaseTableFailure } from './aws-failures';
import { prepareLeaseLayout } from '../checkpoint/lease-layout';
import { InvalidConfigError } from '../errors';
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

/** A shard consumer that is not running, and how it ended. */
export interface ClosedShardConsumer {
  workflowId: string;
  /** Its result's reason, or how it closed without one; NOT_FOUND if it never existed. */
  reason: ShardConsumerResult['reason'] | 'FAILED' | 'TERMINATED' | 'TIMED_OUT' | 'CANCELLED' | 'NOT_FOUND';
  /** The failure's message, for a consumer that closed without a result. */
  message?: string;
  childShards?: ChildShard[];
}

/** Shard consumers described at once by the audit. */
const DESCRIBE_CONCURRENCY = 20;

function innermostMessage(error: unknown): string {
  let message = error instanceof Error ? error.message : String(error);
  let cause: unknown = error instanceof Error ? error.cause : undefined;
  for (let depth = 0; cause instanceof Error && depth < 10; depth++) {
    if (cause.message) message = cause.message;
    cause = cause.cause;
  }
  return message;
}

async function closedShardConsumer(client: Client, workflowId: string): Promise<ClosedShardConsumer | undefined> {
  const handle = client.workflow.getHandle(workflowId);
  let status: string;
  try {
    status = (await handle.describe()).status.name;
  } catch (error) {
    if ((error as { name?: string }).name === 'WorkflowNotFoundError') return { workflowId, reason: 'NOT_FOUND' };
    throw error;
  }
  if (status === 'RUNNING') return undefined;
  if (status === 'COMPLETED') {
    const result = (await handle.result()) as ShardConsumerResult;
    return { workflowId, reason: result.reason, childShards: result.childShards };
  }
  const reason =
    status === 'TERMINATED'
      ? 'TERMINATED'
      : status === 'TIMED_OUT'
        ? 'TIMED_OUT'
        : status === 'CANCELLED'
          ? 'CANCELLED'
          : 'FAILED';
  const message = await handle.result().then(
    () => status,
    (error: unknown) => innermostMessage(error),
  );
  return { workflowId, reason, message };
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
      /** The stream identifier of a multi-stream lease table. */
      streamIdentifier?: string;
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
        leases = await (
          await table(input.tableName, input.streamIdentifier)
        ).getLeases(listed.map((shard) => shard.shardId));
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

    /**
     * Of these shard consumers, those that are not running, and how each ended: its result's reason (and the children
     * it reported at shard end), or how it closed without a result (FAILED, TERMINATED, ...) with the failure's message.
     * The stream consumer's audit uses it for consumers it does not watch itself (started by an earlier run).
     */
    async closedShardConsumers(input: { workflowIds: string[] }): Promise<ClosedShardConsumer[]> {
      if (!client) throw new Error('closedShardConsumers needs a Temporal client in the activity dependencies');
      const closed: ClosedShardConsumer[] = [];
      for (let i = 0; i < input.workflowIds.length; i += DESCRIBE_CONCURRENCY) {
        const chunk = input.workflowIds.slice(i, i + DESCRIBE_CONCURRENCY);
        const found = await Promise.all(chunk.map((workflowId) => closedShardConsumer(client, workflowId)));
        for (const one of found) if (one) closed.push(one);
      }
      return closed;
    },

    /**
     * Checks, before a stream consumer's first start, that the lease table may serve this stream in the layout asked for
     * (the layouts never mix in one table; a single-stream table serves one stream) and returns the stream identifier
     * for a multi-stream table. A conflict is a non-retryable InvalidConfig failure naming it.
     */
    async prepareLeaseTable(input: {
      tableName: string;
      applicationName: string;
      streamName: string;
      multiStream: boolean;
    }): Promise<{ streamIdentifier?: string }> {
      let identifier;
      try {
        identifier = await prepareLeaseLayout({ kinesis, dynamoDb }, input);
      } catch (error) {
        if (error instanceof InvalidConfigError) {
          throw ApplicationFailure.create({
            type: FailureType.InvalidConfig,
            message: error.message,
            nonRetryable: true,
          });
        }
        const failure = kinesisFailure(error, `preparing lease table ${input.tableName} for ${input.streamName}`);
        if (failure.type === FailureType.StreamNotFound) {
          throw ApplicationFailure.create({
            type: FailureType.StreamNotFound,
            message: `stream ${input.streamName} does not exist (or was deleted): ${failure.message}`,
            nonRetryable: true,
          });
        }
        throw failure;
      }
      return identifier === undefined ? {} : { streamIdentifier: identifier };
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

import {
  CreateTableCommand,
  DescribeTableCommand,
  type DynamoDBClient,
  PutItemCommand,
  ResourceInUseException,
  ResourceNotFoundException,
} from '@aws-sdk/client-dynamodb';
import { type KinesisClient, PutRecordsCommand, type PutRecordsRequestEntry } from '@aws-sdk/client-kinesis';
import type { DeadLetterDestination, ShardRef } from '../consumer-types';
import { KclError } from '../errors';
import type { KinesisRecord } from '../record-processor';

/** A record that processing gave up on, as the dead-letter destination receives it. */
export interface DeadLetterEntry extends ShardRef {
  record: KinesisRecord;
  /** The processor's last error. */
  error: string;
  deadLetteredAt: Date;
}

/** Receives dead-lettered records; registered on the worker by name (`deadLetterHandlers`). */
export type DeadLetterHandler = (entries: DeadLetterEntry[]) => Promise<void> | void;

/** Delivering to the dead-letter destination failed (retried by the activity's policy). */
export class DeadLetterFailedError extends KclError {
  override readonly name = 'DeadLetterFailed';
}

const KINESIS_MAX_RECORD_BYTES = 1024 * 1024;

/** The JSON a Kinesis dead-letter stream receives per record (data in base64). */
export function deadLetterEnvelope(entry: DeadLetterEntry): Record<string, unknown> {
  const { record } = entry;
  return {
    applicationName: entry.applicationName,
    streamName: entry.streamName,
    shardId: entry.shardId,
    sequenceNumber: record.sequenceNumber,
    ...(record.subSequenceNumber !== undefined ? { subSequenceNumber: record.subSequenceNumber } : {}),
    partitionKey: record.partitionKey,
    ...(record.explicitHashKey ? { explicitHashKey: record.explicitHashKey } : {}),
    approximateArrivalTimestamp: record.approximateArrivalTimestamp.toISOString(),
    error: entry.error,
    deadLetteredAt: entry.deadLetteredAt.toISOString(),
    data: Buffer.from(record.data).toString('base64'),
  };
}

/** Id of a dead-lettered record in a DynamoDB destination: writing the same record twice overwrites, never duplicates. */
export function deadLetterId(entry: DeadLetterEntry): string {
  return `${entry.applicationName}/${entry.streamName}/${entry.shardId}/${entry.record.sequenceNumber}/${entry.record.subSequenceNumber ?? 0}`;
}

export interface DeadLetterDeps {
  kinesis: KinesisClient;
  dynamoDb: DynamoDBClient;
  handlers: Readonly<Record<string, DeadLetterHandler>>;
}

/** Delivers dead-lettered records to a destination: a registered callback, a DynamoDB table or a Kinesis stream. */
export function createDeadLetterWriter({ kinesis, dynamoDb, handlers }: DeadLetterDeps) {
  const tablesReady = new Map<string, Promise<void>>();

  const ensureTable = (tableName: string): Promise<void> => {
    let ready = tablesReady.get(tableName);
    if (!ready) {
      ready = (async () => {
        try {
          await dynamoDb.send(new DescribeTableCommand({ TableName: tableName }));
        } catch (error) {
          if (!(error instanceof ResourceNotFoundException)) throw error;
          try {
            await dynamoDb.send(
              new CreateTableCommand({
                TableName: tableName,
                AttributeDefinitions: [{ AttributeName: 'id', AttributeType: 'S' }],
                KeySchema: [{ AttributeName: 'id', KeyType: 'HASH' }],
                BillingMode: 'PAY_PER_REQUEST',
              }),
            );
          } catch (createError) {
            if (!(createError instanceof ResourceInUseException)) throw createError;
          }
        }
        for (let i = 0; i < 600; i++) {
          const { Table } = await dynamoDb.send(new DescribeTableCommand({ TableName: tableName }));
          if (Table?.TableStatus === 'ACTIVE') {
            const keys = Table.KeySchema ?? [];
            if (keys.length !== 1 || keys[0]?.AttributeName !== 'id') {
              throw new DeadLetterFailedError(
                `dead-letter table ${tableName} must have exactly one hash key named id (S)`,
              );
            }
            return;
          }
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        throw new DeadLetterFailedError(`dead-letter table ${tableName} did not become ACTIVE`);
      })();
      tablesReady.set(tableName, ready);
      ready.catch(() => tablesReady.delete(tableName));
    }
    return ready;
  };

  const toDynamoDb = async (tableName: string, entries: DeadLetterEntry[]) => {
    await ensureTable(tableName);
    for (const entry of entries) {
      const { record } = entry;
      await dynamoDb.send(
        new PutItemCommand({
          TableName: tableName,
          Item: {
            id: { S: deadLetterId(entry) },
            applicationName: { S: entry.applicationName },
            streamName: { S: entry.streamName },
            shardId: { S: entry.shardId },
            sequenceNumber: { S: record.sequenceNumber },
            ...(record.subSequenceNumber !== undefined
              ? { subSequenceNumber: { N: String(record.subSequenceNumber) } }
              : {}),
            partitionKey: { S: record.partitionKey },
            ...(record.explicitHashKey ? { explicitHashKey: { S: record.explicitHashKey } } : {}),
            approximateArrivalTimestamp: { S: record.approximateArrivalTimestamp.toISOString() },
            error: { S: entry.error.slice(0, 10_000) },
            deadLetteredAt: { S: entry.deadLetteredAt.toISOString() },
            // DynamoDB items hold 400 KB: bigger records keep their metadata and are marked as truncated.
            ...(record.data.byteLength <= 350_000
              ? { data: { B: record.data } }
              : { dataTruncated: { BOOL: true }, dataBytes: { N: String(record.data.byteLength) } }),
          },
        }),
      );
    }
  };

  const toKinesis = async (streamName: string, entries: DeadLetterEntry[]) => {
    const all: PutRecordsRequestEntry[] = entries.map((entry) => {
      const envelope = Buffer.from(JSON.stringify(deadLetterEnvelope(entry)));
      // A record near the 1 MiB maximum does not fit an envelope: it goes as it came (data and partition key).
      return envelope.byteLength <= KINESIS_MAX_RECORD_BYTES
        ? { PartitionKey: entry.record.partitionKey, Data: envelope }
        : { PartitionKey: entry.record.partitionKey, Data: entry.record.data };
    });
    for (let start = 0; start < all.length; start += 500) {
      let pending = all.slice(start, start + 500);
      for (let attempt = 0; pending.length > 0; attempt++) {
        if (attempt === 5)
          throw new DeadLetterFailedError(
            `${pending.length} records could not be put to dead-letter stream ${streamName}`,
          );
        if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** attempt));
        const result = await kinesis.send(new PutRecordsCommand({ StreamName: streamName, Records: pending }));
        pending = pending.filter((_, index) => result.Records?.[index]?.ErrorCode);
      }
    }
  };

  return async (destination: DeadLetterDestination, entries: DeadLetterEntry[]): Promise<void> => {
    if (entries.length === 0) return;
    switch (destination.type) {
      case 'CALLBACK': {
        const handler = handlers[destination.name];
        if (!handler) {
          throw new DeadLetterFailedError(
            `no dead-letter handler named '${destination.name}' is registered on this worker (registered: ${Object.keys(handlers).join(', ') || 'none'})`,
          );
        }
        await handler(entries);
        return;
      }
      case 'DYNAMODB':
        return toDynamoDb(destination.tableName, entries);
      case 'KINESIS':
        return toKinesis(destination.streamName, entries);
    }
  };
}

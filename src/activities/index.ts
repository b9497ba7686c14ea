import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { KinesisClient } from '@aws-sdk/client-kinesis';
import type { Client } from '@temporalio/client';
import type { BatchCache } from './batch-cache';
import { createCheckpointActivities } from './checkpoint-activities';
import { createDeadLetterWriter, type DeadLetterHandler } from './dead-letter';
import { createDeadLetterActivities } from './dead-letter-activities';
import { createKinesisActivities } from './kinesis-activities';
import { createProcessorActivities } from './processor-activities';
import { createStreamActivities } from './stream-activities';
import type { ProcessorHost } from './processor-host';

/** What the activities need: AWS clients, and this worker's processor host, batch cache and own task queue. */
export interface ActivityDeps {
  kinesis: KinesisClient;
  dynamoDb: DynamoDBClient;
  host: ProcessorHost;
  cache: BatchCache;
  workerQueue: string;
  /** Temporal client (the stream consumer checks on its shard consumers with it). */
  client?: Client;
  /** Dead-letter handlers by name, for `deadLetter: { type: 'CALLBACK', name }`. */
  deadLetterHandlers?: Readonly<Record<string, DeadLetterHandler>>;
}

/** All of temporal-kcl's activities, built from their dependencies (tests pass emulator clients). */
export function createActivities(deps: ActivityDeps) {
  return {
    ...createKinesisActivities(deps),
    ...createCheckpointActivities(deps),
    ...createProcessorActivities(deps),
    ...createStreamActivities(deps),
    ...createDeadLetterActivities({
      ...deps,
      writeDeadLetters: createDeadLetterWriter({ ...deps, handlers: deps.deadLetterHandlers ?? {} }),
    }),
  };
}

export type Activities = ReturnType<typeof createActivities>;

export { BatchCache, type BatchCacheOptions } from './batch-cache';
export { ProcessorHost } from './processor-host';
export type { GetRecordsInput } from './kinesis-activities';
export type { CheckpointInput, ClaimLeaseInput } from './checkpoint-activities';
export type { ProcessRecordsInput, ShutdownProcessorInput } from './processor-activities';
export type { DeadLetterEntry, DeadLetterHandler } from './dead-letter';

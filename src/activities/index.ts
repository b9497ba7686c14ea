import type { LiveOwnerGuard } from '../checkpoint/checkpoint-table';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { KinesisClient } from '@aws-sdk/client-kinesis';
import type { Client } from '@temporalio/client';
import type { BatchCache } from './batch-cache';
import { createCheckpointActivities } from './checkpoint-activities';
import { createDeadLetterWriter, type DeadLetterHandler } from './dead-letter';
import { createDeadLetterActivities } from './dead-letter-activities';
import { createFanOutConsumerActivities } from './fan-out-consumer-activities';
import { createFanOutReader, type FanOutReader } from './fan-out-reader';
import { createFleetActivities } from './fleet-activities';
import { withHeartbeats } from './heartbeat';
import { createKinesisActivities } from './kinesis-activities';
import { pinLeases } from './pin-lease';
import { createProcessorActivities } from './processor-activities';
import { createShardReader } from './shard-reader';
import { createWindowActivities } from './window-activities';
import { createStreamActivities } from './stream-activities';
import type { ProcessorHost } from './processor-host';
import type { ShardLoadMeter } from './shard-load';

/** What the activities need: AWS clients, and this worker's processor host, batch cache and own task queue. */
export interface ActivityDeps {
  kinesis: KinesisClient;
  /**
   * The Kinesis client enhanced fan-out subscribes with (HTTP/2, the AWS SDK's default handler), made on first use.
   * @default none: a fan-out read fails with InvalidConfig
   */
  kinesisFanOut?: () => KinesisClient;
  /** This worker's push streams, if the caller keeps them (to close them when the worker stops). */
  fanOut?: FanOutReader;
  dynamoDb: DynamoDBClient;
  host: ProcessorHost;
  cache: BatchCache;
  workerQueue: string;
  /** Temporal client (the stream consumer checks on its shard consumers with it). */
  client?: Client;
  /** Dead-letter handlers by name, for `deadLetter: { type: 'CALLBACK', name }`. */
  deadLetterHandlers?: Readonly<Record<string, DeadLetterHandler>>;
  /** Leases of live Java KCL workers are not taken (see LiveOwnerGuard). */
  liveOwnerGuard?: LiveOwnerGuard;
  /** Load per pin, measured where batches are delivered (the worker's load reporter writes it). */
  meter?: ShardLoadMeter;
}

type Activity = (input: never) => Promise<unknown>;

/**
 * Activities that any worker of the shared task queue may take (shard listings, leases, iterators) heartbeat while they
 * run: when the worker that took one dies, the heartbeat timeout hands it to another worker within seconds instead of
 * after its start-to-close timeout, during which the shard (or, for the stream consumer, every new child) would stall.
 */
function heartbeating<A extends Record<string, Activity>>(activities: A, names: readonly (keyof A & string)[]): A {
  const wrapped: Record<string, Activity> = { ...activities };
  for (const name of names) {
    const activity = activities[name] as Activity;
    wrapped[name] = (input) => withHeartbeats(() => activity(input));
  }
  return wrapped as A;
}

/** All of temporal-kcl's activities, built from their dependencies (tests pass emulator clients). */
export function createActivities(deps: ActivityDeps) {
  const fanOut = deps.fanOut ?? (deps.kinesisFanOut ? createFanOutReader({ client: deps.kinesisFanOut }) : undefined);
  const reader = createShardReader({ kinesis: deps.kinesis, ...(fanOut ? { fanOut } : {}) });
  const openLease = pinLeases(deps.dynamoDb, deps.host);
  return {
    ...heartbeating(createKinesisActivities({ ...deps, reader }), ['describeShard', 'getShardIterator']),
    // Not `checkpoint`: it runs as a local activity, inside the workflow's own task, and has no heartbeat.
    ...heartbeating(createCheckpointActivities(deps), ['readParents', 'claimLease', 'releaseLease']),
    ...createProcessorActivities({ ...deps, openLease }),
    ...createWindowActivities({ ...deps, reader, openLease }),
    ...heartbeating(createStreamActivities(deps), [
      'discoverShards',
      'closedWorkflows',
      'closedShardConsumers',
      'prepareLeaseTable',
    ]),
    ...heartbeating(createFanOutConsumerActivities(deps), ['registerStreamConsumer', 'deregisterStreamConsumer']),
    // Not wrapped in `heartbeating`: `watchFleet` waits for minutes and heartbeats on its own cadence.
    ...createFleetActivities(deps),
    ...createDeadLetterActivities({
      ...deps,
      writeDeadLetters: createDeadLetterWriter({ ...deps, handlers: deps.deadLetterHandlers ?? {} }),
    }),
  };
}

export type Activities = ReturnType<typeof createActivities>;

export { BatchCache, type BatchCacheOptions } from './batch-cache';
export { ProcessorHost } from './processor-host';
export { ShardLoadMeter } from './shard-load';
export { startLoadReporter, type LoadReporter, DEFAULT_LOAD_REPORT_INTERVAL_MS } from './load-reporter';
export { describeFleet } from './fleet-activities';
export { createFanOutReader, type FanOutReader } from './fan-out-reader';
export type { GetRecordsInput } from './kinesis-activities';
export type { WindowEnd, WindowHeartbeat, WindowInput, WindowResult } from './window-activities';
export type { CheckpointInput, ClaimLeaseInput } from './checkpoint-activities';
export type { ProcessRecordsInput, ShutdownProcessorInput } from './processor-activities';
export type { DeadLetterEntry, DeadLetterHandler } from './dead-letter';

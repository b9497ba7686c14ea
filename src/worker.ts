/**
 * Wires clients → activities → Temporal workers. A temporal-kcl worker process runs three Temporal workers on one
 * connection, under one identity: on the shared task queue one for activities any worker may run and one for
 * workflows, and one on a task queue of its own, where the shards pinned to this process send their reads and batches,
 * so record data never leaves it.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { KinesisClient } from '@aws-sdk/client-kinesis';
import { Client } from '@temporalio/client';
import { type DataConverter, WorkflowNotFoundError } from '@temporalio/common';
import { type NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import {
  BatchCache,
  type BatchCacheOptions,
  createActivities,
  createFanOutReader,
  type DeadLetterHandler,
  ProcessorHost,
  ShardLoadMeter,
  startLoadReporter,
} from './activities';
import { type AwsConfig, createDynamoDbClient, createFanOutKinesisClient, createKinesisClient } from './aws/clients';
import type { LiveOwnerGuard } from './checkpoint/checkpoint-table';
import { InvalidConfigError } from './errors';
import type { ShardRef } from './consumer-types';
import { DEFAULT_TASK_QUEUE, shardConsumerWorkflowId, workerTaskQueue } from './ids';
import type { RecordProcessorFactory } from './record-processor';
import { workflowBundleForWorker } from './workflow-bundle-cache';
import type * as ShardConsumerModule from './workflows/shard-consumer';

export interface KclWorkerOptions {
  /** Record processor factories by name; a consumer names the one it uses. */
  processors: Record<string, RecordProcessorFactory>;
  /** Connection to Temporal (`NativeConnection.connect({ address })`). */
  connection: NativeConnection;
  /** @default 'default' */
  namespace?: string;
  /** @default 'temporal-kcl' */
  taskQueue?: string;
  /**
   * AWS settings, or ready-made clients. `kinesisFanOut` is the client enhanced fan-out subscribes with
   * (`retrieval: 'fan-out'`): a KinesisClient with the AWS SDK's default HTTP/2 handler; from an AwsConfig it is made for
   * you. @default the AWS SDK's defaults (region and credentials from the environment)
   */
  aws?: AwsConfig | { kinesis: KinesisClient; dynamoDb: DynamoDBClient; kinesisFanOut?: KinesisClient };
  /** Worker identity shown in the Temporal UI. @default `<hostname>-<pid>-<random>` */
  identity?: string;
  /** Bounds of the in-memory batch cache. */
  cache?: BatchCacheOptions;
  /**
   * How long a workflow task waits for this worker's sticky queue before any worker may take it: a dead worker's
   * shards move on after this much. Too short only costs a replay of the run's history on another worker.
   * @default 500
   */
  stickyQueueScheduleToStartTimeoutMs?: number;
  /**
   * Time a graceful stop (`shutdown()`, SIGTERM/SIGINT on the CLI) takes at most. The shards held here are handed over
   * first (each processor gets `shutdown(REQUESTED)` with a working checkpointer, then another worker initializes at its
   * checkpoint), for up to this time less 5 s; in-flight tasks then get the rest. Kubernetes'
   * terminationGracePeriodSeconds (30 s by default) must be longer.
   * @default 20000
   */
  shutdownGraceTimeMs?: number;
  /**
   * The most shards this worker holds. A shard beyond it goes to another worker; if every worker is full, it waits
   * (state WAITING_FOR_WORKER) until one has room. A stream consumer's placement never plans more than this here.
   * @default unlimited
   */
  maxShardsPerWorker?: number;
  /**
   * A processor whose shard has not used it for this long is checked on: if the shard consumer no longer names this
   * worker (the shard moved, or its consumer ended), it is shut down (ZOMBIE). A quiet shard still pinned here keeps
   * its processor. The check is a query of the shard consumer's progress (a Temporal Cloud action; at most one per
   * processorIdleTimeoutMs per quiet shard).
   * @default 600000
   */
  processorIdleTimeoutMs?: number;
  /**
   * A lease a Java KCL worker holds (its owner is not a temporal-kcl consumer) is taken only once it is stale: its
   * counter did not move for `failoverTimeMs` (KCL's failoverTimeMillis). `force: true` takes it anyway.
   * @default { failoverTimeMs: 10000, force: false }
   */
  liveOwnerGuard?: LiveOwnerGuard;
  /**
   * How often the load of each shard pinned here (KB/s, records/s) is written into its lease item, where the stream
   * consumer's placement reads it. A shard new on this worker is reported within a second. One DynamoDB write per
   * shard per interval.
   * @default 30000
   */
  loadReportIntervalMs?: number;
  /** Handlers for `deadLetter: { type: 'CALLBACK', name }`, by name. @default none */
  deadLetterHandlers?: Record<string, DeadLetterHandler>;
  /** Data converter of workflow payloads, e.g. with the KclPayloadCodec (same as the clients'). @default Temporal's */
  dataConverter?: DataConverter;
  /**
   * Pre-bundled workflow code (tests). @default `npm run build`'s dist/workflow-bundle.js, else a bundle of the source
   * cached in node_modules/.cache/temporal-kcl (made on the first start after a change)
   */
  workflowBundle?: WorkerOptions['workflowBundle'];
  /** Extra Temporal worker options for the shared queue's workers (activities and workflows; tuning). */
  workerOptions?: Partial<Omit<WorkerOptions, 'connection' | 'namespace' | 'taskQueue' | 'activities'>>;
}

/** Default of {@link KclWorkerOptions.shutdownGraceTimeMs}: a container's stop grace must be longer. */
export const DEFAULT_SHUTDOWN_GRACE_TIME_MS = 20_000;

/** What the Temporal workers get for in-flight tasks once the shards are handed over (the rest of the grace is the handoff's). */
const FINAL_GRACE_MS = 5_000;

/** Default of {@link KclWorkerOptions.stickyQueueScheduleToStartTimeoutMs}. */
export const DEFAULT_STICKY_QUEUE_TIMEOUT_MS = 500;

/**
 * Heartbeats go out at least this often (Temporal's own throttle is 80% of the heartbeat timeout, which leaves little
 * room for a busy event loop before a live worker's task is presumed dead).
 */
const MAX_HEARTBEAT_THROTTLE_MS = 400;

/** A running temporal-kcl worker. */
export interface KclWorker {
  /** This process's own task queue. */
  readonly workerQueue: string;
  readonly identity: string;
  readonly host: ProcessorHost;
  readonly cache: BatchCache;
  /** Runs until `shutdown()` (or a fatal error). */
  run(): Promise<void>;
  /**
   * Graceful stop: every shard held here is handed over to another worker (its processor gets `shutdown(REQUESTED)`
   * with a working checkpointer; the next worker initializes at that checkpoint), then in-flight work finishes. A shard
   * still here when the handoff time is up (no other worker ran its consumer in time) gets `shutdown(ZOMBIE)`.
   */
  shutdown(): Promise<void>;
  /** Runs while `promise` is pending, then shuts down; resolves with its value. */
  runUntil<T>(promise: Promise<T>): Promise<T>;
}

function clientsFrom(aws: KclWorkerOptions['aws']): {
  kinesis: KinesisClient;
  dynamoDb: DynamoDBClient;
  kinesisFanOut?: () => KinesisClient;
} {
  if (aws && 'kinesis' in aws && 'dynamoDb' in aws) {
    const { kinesisFanOut } = aws;
    return {
      kinesis: aws.kinesis,
      dynamoDb: aws.dynamoDb,
      ...(kinesisFanOut ? { kinesisFanOut: () => kinesisFanOut } : {}),
    };
  }
  // Activities retry through Temporal retry policies (visible in the UI and in metrics), not inside the SDK.
  const config: AwsConfig = { maxAttempts: 1, ...(aws ?? {}) };
  // Made on the first fan-out read only: a polling worker opens no HTTP/2 session.
  let fanOutClient: KinesisClient | undefined;
  return {
    kinesis: createKinesisClient(config),
    dynamoDb: createDynamoDbClient(config),
    kinesisFanOut: () => (fanOutClient ??= createFanOutKinesisClient(config)),
  };
}

/**
 * The workflow code: a given bundle, the one `npm run build` writes next to this file, or one cached on disk by a
 * fingerprint of the source (webpack runs only when the source changed since the last start).
 */
async function workflowCode(
  bundle: KclWorkerOptions['workflowBundle'],
): Promise<Pick<WorkerOptions, 'workflowBundle'>> {
  return { workflowBundle: bundle ?? (await workflowBundleForWorker()) };
}

/**
 * Whether the shard's consumer still has the shard pinned to this worker: it is running and its progress names this
 * worker's queue. A describe and a query (a query is a Temporal Cloud action; this runs at most once per idle timeout of
 * a quiet shard). A consumer that no longer exists is not pinned anywhere.
 */
async function stillPinnedHere(client: Client, ref: ShardRef, workerQueue: string): Promise<boolean> {
  const handle = client.workflow.getHandle(shardConsumerWorkflowId(ref.applicationName, ref.streamName, ref.shardId));
  try {
    if ((await handle.describe()).status.name !== 'RUNNING') return false;
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) return false;
    throw error;
  }
  // Loaded when first needed, not at start-up: the workflow modules (and zod) cost a starting worker ~50 ms.
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- a lazy load needs a synchronous require
  const { progressQuery } = require('./workflows/shard-consumer') as typeof ShardConsumerModule;
  const progress = await handle.query(progressQuery);
  return progress.state !== 'ENDED' && progress.worker === workerQueue;
}

/** Creates a temporal-kcl worker: workflows and activities on the shared task queue, and this process's own queue. */
export async function createKclWorker(options: KclWorkerOptions): Promise<KclWorker> {
  const names = Object.keys(options.processors ?? {});
  if (names.length === 0)
    throw new InvalidConfigError('createKclWorker needs at least one record processor factory in `processors`');
  for (const name of names) {
    if (typeof options.processors[name] !== 'function') {
      throw new InvalidConfigError(`processors.${name} must be a function (context) => RecordProcessor`);
    }
  }
  const taskQueue = options.taskQueue ?? DEFAULT_TASK_QUEUE;
  const identity = options.identity ?? `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
  const workerQueue = workerTaskQueue(taskQueue, identity);
  const { kinesis, dynamoDb, kinesisFanOut } = clientsFrom(options.aws);
  const fanOut = kinesisFanOut ? createFanOutReader({ client: kinesisFanOut }) : undefined;
  const maxShards = options.maxShardsPerWorker;
  if (maxShards !== undefined && (!Number.isInteger(maxShards) || maxShards < 1)) {
    throw new InvalidConfigError(`maxShardsPerWorker must be a positive integer, got ${String(maxShards)}`);
  }
  const host = new ProcessorHost(options.processors, maxShards !== undefined ? { maxShards } : {});
  const cache = new BatchCache(options.cache);
  const meter = new ShardLoadMeter();
  const namespace = options.namespace ?? 'default';
  const dataConverter = options.dataConverter ? { dataConverter: options.dataConverter } : {};
  const client = new Client({ connection: options.connection, namespace, ...dataConverter });
  const activities = createActivities({
    kinesis,
    dynamoDb,
    host,
    cache,
    workerQueue,
    client,
    meter,
    liveOwnerGuard: options.liveOwnerGuard ?? { failoverTimeMs: 10_000 },
    ...(options.deadLetterHandlers ? { deadLetterHandlers: options.deadLetterHandlers } : {}),
    ...(fanOut ? { fanOut } : {}),
  });
  const graceMs = options.shutdownGraceTimeMs ?? DEFAULT_SHUTDOWN_GRACE_TIME_MS;
  // The handoffs get the grace time less what in-flight tasks need at the end.
  const shutdownGraceTime = Math.min(FINAL_GRACE_MS, Math.floor(graceMs / 4));
  const handoffTimeMs = Math.max(0, graceMs - shutdownGraceTime);

  const stickyQueueScheduleToStartTimeout =
    options.stickyQueueScheduleToStartTimeoutMs ?? DEFAULT_STICKY_QUEUE_TIMEOUT_MS;
  // Three Temporal workers under one identity (membership reads the shared queue's pollers): activities on the shared
  // queue and on this process's own queue are created at once and poll first; the workflow worker (which builds the
  // workflow VM from a 3 MB bundle, ~0.6 s) is created once they run, so a starting worker takes shards sooner.
  const sharedActivities = await Worker.create({
    connection: options.connection,
    namespace,
    taskQueue,
    identity,
    activities,
    maxHeartbeatThrottleInterval: MAX_HEARTBEAT_THROTTLE_MS,
    shutdownGraceTime,
    ...dataConverter,
    ...options.workerOptions,
  });
  const pinned = await Worker.create({
    connection: options.connection,
    namespace,
    taskQueue: workerQueue,
    identity,
    activities,
    shutdownGraceTime,
    ...dataConverter,
    maxHeartbeatThrottleInterval: MAX_HEARTBEAT_THROTTLE_MS,
    // Each pinned shard has at most a read and a process in flight; slots must not be what delays them.
    maxConcurrentActivityTaskExecutions: 2_000,
  });
  const createWorkflowWorker = async () =>
    Worker.create({
      connection: options.connection,
      namespace,
      taskQueue,
      identity,
      ...(await workflowCode(options.workflowBundle)),
      // Local activities (a workflow's own checkpoint write) run on the worker that runs the workflow; this one polls
      // no activity tasks (the shared activities worker does).
      activities,
      enableNonLocalActivities: false,
      stickyQueueScheduleToStartTimeout,
      shutdownGraceTime,
      ...dataConverter,
      ...options.workerOptions,
    });
  /**
   * Every Temporal worker of this process, for `shutdown()` to stop each: the two activity workers from the start, the
   * workflow worker once `run()` has created it.
   */
  const temporalWorkers: Worker[] = [sharedActivities, pinned];

  let running: Promise<void> | undefined;
  let stopping: Promise<void> | undefined;
  const idleTimeoutMs = options.processorIdleTimeoutMs ?? 600_000;

  const worker: KclWorker = {
    workerQueue,
    identity,
    host,
    cache,
    run() {
      running ??= (async () => {
        let sweeping: Promise<unknown> | undefined;
        const sweeper = setInterval(
          () => {
            sweeping ??= host
              .evictIdle(idleTimeoutMs, (ref) => stillPinnedHere(client, ref, workerQueue))
              .catch(() => undefined)
              .finally(() => (sweeping = undefined));
          },
          Math.min(60_000, idleTimeoutMs),
        );
        const reporter = startLoadReporter({
          dynamoDb,
          host,
          meter,
          workerQueue,
          ...(maxShards !== undefined ? { maxShards } : {}),
          ...(options.loadReportIntervalMs !== undefined ? { intervalMs: options.loadReportIntervalMs } : {}),
        });
        try {
          const runs = [sharedActivities.run(), pinned.run()];
          const workflows = (async () => {
            let workflowWorker: Worker;
            try {
              workflowWorker = await createWorkflowWorker();
            } catch (error) {
              // No workflow code (e.g. it does not bundle): the process must not stay up with half a worker.
              for (const activityWorker of temporalWorkers) {
                if (activityWorker.getState() === 'RUNNING') activityWorker.shutdown();
              }
              throw error;
            }
            temporalWorkers.push(workflowWorker);
            const run = workflowWorker.run();
            // Created while shutdown() was stopping the others: stopped at once.
            if (stopping && workflowWorker.getState() === 'RUNNING') workflowWorker.shutdown();
            await run;
          })();
          await Promise.all([...runs, workflows]);
        } finally {
          clearInterval(sweeper);
          fanOut?.close();
          await reporter.stop();
        }
      })();
      return running;
    },
    shutdown() {
      stopping ??= (async () => {
        // Refuse new shards and new work for the shards held here, and end their waits and windows: each consumer hands
        // its shard over at once. The workers keep running meanwhile: the consumers' workflow tasks run here (cached),
        // and so does each processor's shutdown(REQUESTED).
        host.beginDrain();
        // No new tasks of the shared queue here (a handed-over shard's initialize would only be refused and retried).
        if (sharedActivities.getState() === 'RUNNING') sharedActivities.shutdown();
        if (running) {
          const deadline = Date.now() + handoffTimeMs;
          while (host.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
        }
        // Whatever is still here (no other worker took its consumer in time): shutdown(ZOMBIE).
        await host.drain();
        for (const temporalWorker of temporalWorkers) {
          if (temporalWorker.getState() === 'RUNNING') temporalWorker.shutdown();
        }
        await running?.catch(() => undefined);
      })();
      return stopping;
    },
    async runUntil<T>(promise: Promise<T>): Promise<T> {
      const run = worker.run();
      try {
        const raced = await Promise.race([
          promise,
          run.then(() => Promise.reject(new Error('worker stopped before the promise settled'))),
        ]);
        return raced;
      } finally {
        await worker.shutdown();
        await run.catch(() => undefined);
      }
    },
  };
  return worker;
}

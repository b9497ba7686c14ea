/**
 * Stubbed activities for deterministic workflow tests of the shard consumer, over an in-memory shard (fake-shard.ts), a
 * lease table with KCL's owner and counter fencing (fake-lease-table.ts) and a recording processor. Every call is
 * logged with its attempt, task queue and workflow time, so tests assert on positions, calls, order and checkpoints.
 *
 * The stubs have the types of the real activities (`Activities`), so a change of an activity's shape breaks these tests
 * at compile time.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import type { Activities } from '../../src/activities';
import type { ShardConsumerResult, ShardDescription } from '../../src/consumer-types';
import { FailureType } from '../../src/failure-types';
import { leaseOwner } from '../../src/ids';
import type { ShardConsumerOptions } from '../../src/options';
import { type ExtendedSequenceNumber, formatPosition } from '../../src/positions';
import { type ShardConsumerInput, shardConsumerWorkflow } from '../../src/workflows/shard-consumer';
import { workflowBundle } from './bundle';
import { FakeLeaseTable } from './fake-lease-table';
import { fakeClock, FakeShard, type UserRecord } from './fake-shard';
import { uniqueName } from './stack';

export { FakeLeaseTable, type FakeLease, type WrittenCheckpoint } from './fake-lease-table';
export { FakeShard, positionsOf, sequenceNumberAt, type UserRecord } from './fake-shard';

/** The activities the shard consumer calls: the ones stubbed here. */
export type ActivityName =
  | 'describeShard'
  | 'getShardIterator'
  | 'getRecords'
  | 'readParents'
  | 'claimLease'
  | 'checkpoint'
  | 'releaseLease'
  | 'initializeProcessor'
  | 'processRecords'
  | 'shutdownProcessor';
/** The shard consumer's activities, with the types of the real ones. */
export type ShardConsumerActivities = Pick<Activities, ActivityName>;
type Input<N extends ActivityName> = Parameters<Activities[N]>[0];
type Output<N extends ActivityName> = Awaited<ReturnType<Activities[N]>>;

/** One attempt of one activity, as the stub saw it. */
export interface ActivityCall<N extends ActivityName = ActivityName> {
  name: N;
  input: Input<N>;
  /** 1-based index among the calls of this activity (every attempt counts). */
  nth: number;
  attempt: number;
  taskQueue: string;
  isLocal: boolean;
  /** Server (workflow) time at which this attempt was scheduled: skipped time included. */
  scheduledAtMs: number;
  /** Ticks of one clock shared by all calls: when the call started and when it returned or threw. */
  startTick: number;
  endTick?: number;
  result?: Output<N>;
  error?: unknown;
}

/**
 * Runs before the stub's own behaviour: may throw (fault injection), may wait, and may return a value that replaces the
 * stub's result.
 */
export type Hook<N extends ActivityName> = (
  input: Input<N>,
  call: ActivityCall<N>,
) => Output<N> | undefined | void | Promise<Output<N> | undefined | void>;

/** What the recording processor does with a batch: the checkpoint it asks for, if any. */
export type CheckpointPolicy = (batch: UserRecord[], nth: number) => ExtendedSequenceNumber | undefined;

/** Checkpoint at the last record of every non-empty batch. */
export const checkpointEveryBatch: CheckpointPolicy = (batch) => batch.at(-1);
/** Never checkpoint while processing. */
export const neverCheckpoint: CheckpointPolicy = () => undefined;

export interface FakeKinesisOptions {
  /** Task queue `initializeProcessor` pins shards to (the queue of a second worker with the same stubs). */
  pinnedQueue: string;
  /** Checkpoints the processor asks for in `processRecords`. @default checkpointEveryBatch */
  checkpointPolicy?: CheckpointPolicy;
  /** The processor checkpoints at its last record in `shutdown(TERMINATE | REQUESTED)`. @default false */
  checkpointOnShutdown?: boolean;
  /** Own queues of more workers with the same stubs (a planned move may target them). @default none */
  otherWorkers?: string[];
}

/**
 * A fake world for the shard consumer: streams of fake shards, a lease table, a processor, and the activities over them.
 */
export class FakeKinesis {
  readonly shards = new Map<string, FakeShard>();
  readonly leases = new FakeLeaseTable();
  readonly calls: ActivityCall[] = [];
  /** Every batch a processor instance received, in delivery order. */
  readonly deliveries: { pin: string; records: UserRecord[]; taskQueue: string }[] = [];
  /** Every shutdown call: the pin, its reason and where it ran. */
  readonly shutdowns: { pin: string; reason: string; taskQueue: string }[] = [];
  /** Processor instances by pin id, with the queue of the worker that holds each. */
  readonly instances = new Map<string, string>();
  /** Batches held in the (single) worker memory, by handle. */
  readonly batches = new Map<string, UserRecord[]>();
  readonly hooks: { [N in ActivityName]?: Hook<N> } = {};
  checkpointPolicy: CheckpointPolicy;
  checkpointOnShutdown: boolean;
  pinnedQueue: string;
  readonly otherWorkers: string[];
  private tick = 0;
  private handles = 0;
  /** The newest lease counter each pin reached (as a worker remembers it for its pins). */
  private readonly pinCounters = new Map<string, number>();
  private readonly waiters = new Set<() => void>();

  constructor(options: FakeKinesisOptions) {
    this.pinnedQueue = options.pinnedQueue;
    this.checkpointPolicy = options.checkpointPolicy ?? checkpointEveryBatch;
    this.checkpointOnShutdown = options.checkpointOnShutdown ?? false;
    this.otherWorkers = options.otherWorkers ?? [];
  }

  addShard(shardId: string, parentShardIds: string[] = []): FakeShard {
    const shard = new FakeShard(shardId, parentShardIds);
    this.shards.set(shardId, shard);
    return shard;
  }

  shard(shardId: string): FakeShard {
    const shard = this.shards.get(shardId);
    if (!shard) throw ApplicationFailure.nonRetryable(`no shard ${shardId}`, FailureType.ShardNotFound);
    return shard;
  }

  /** Calls of one activity, in order. */
  callsOf<N extends ActivityName>(name: N): ActivityCall<N>[] {
    return this.calls.filter((call): call is ActivityCall<N> => call.name === name);
  }

  count(name: ActivityName): number {
    return this.callsOf(name).length;
  }

  /** Names of the calls in the order they started, optionally only some of them. */
  order(names?: ActivityName[]): ActivityName[] {
    return this.calls.filter((call) => !names || names.includes(call.name)).map((call) => call.name);
  }

  /** Every user record delivered to a processor, formatted `seq` or `seq/sub`, in delivery order. */
  delivered(): string[] {
    return this.deliveries.flatMap((delivery) => delivery.records.map((record) => formatPosition(record)));
  }

  /** Resolves once `predicate` holds (checked after every call starts or ends). */
  async until(predicate: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
    if (predicate()) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; calls: ${this.order().join(', ')}`));
      }, timeoutMs);
      const check = () => {
        if (!predicate()) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve();
      };
      this.waiters.add(check);
    });
  }

  private counterOf(pin: string, lease: { counter: number }): number {
    return Math.max(lease.counter, this.pinCounters.get(pin) ?? 0);
  }

  /** A fenced write from a pin's worker; the counter it reaches is remembered for the pin. */
  private write(
    shardId: string,
    pin: string,
    lease: { owner: string; counter: number },
    checkpoint: ExtendedSequenceNumber | 'SHARD_END',
    childShardIds?: string[],
  ): number {
    const { counter } = this.leases.checkpoint({
      shardId,
      owner: lease.owner,
      counter: this.counterOf(pin, lease),
      checkpoint,
      ...(childShardIds && childShardIds.length > 0 ? { childShardIds } : {}),
    });
    this.pinCounters.set(pin, counter);
    return counter;
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }

  private stub<N extends ActivityName>(
    name: N,
    behaviour: (input: Input<N>, call: ActivityCall<N>) => Output<N> | Promise<Output<N>>,
  ): (input: Input<N>) => Promise<Output<N>> {
    const counts = () => this.calls.filter((call) => call.name === name).length;
    return async (input: Input<N>): Promise<Output<N>> => {
      const info = Context.current().info;
      const call: ActivityCall<N> = {
        name,
        input,
        nth: counts() + 1,
        attempt: info.attempt,
        taskQueue: info.taskQueue,
        isLocal: info.isLocal,
        scheduledAtMs: info.currentAttemptScheduledTimestampMs,
        startTick: this.tick++,
      };
      this.calls.push(call);
      this.notify();
      try {
        const hook = this.hooks[name];
        const replaced = hook ? await hook(input, call) : undefined;
        const result = replaced !== undefined ? replaced : await behaviour(input, call);
        call.result = result;
        return result;
      } catch (error) {
        call.error = error;
        throw error;
      } finally {
        call.endTick = this.tick++;
        this.notify();
      }
    };
  }

  /** The activities, typed as the real ones; register them on every worker of the test. */
  activities(): ShardConsumerActivities {
    return {
      describeShard: this.stub('describeShard', (input): ShardDescription => {
        const shard = this.shard(input.shardId);
        return { shardId: shard.shardId, parentShardIds: shard.parentShardIds, hashKeyRange: shard.hashKeyRange };
      }),

      getShardIterator: this.stub('getShardIterator', (input) => {
        const shard = this.shard(input.ref.shardId);
        return { iterator: shard.iteratorAt(shard.indexAt(input.position)), obtainedAt: fakeClock() };
      }),

      getRecords: this.stub('getRecords', async (input) => {
        const shard = this.shard(input.ref.shardId);
        let { summary, records } = shard.read(input.iterator, input.maxRecords, input.skipUntil);
        // A quiet read waits for records, as the worker does (in real time, shortened: the fake shard only grows when a
        // test appends to it).
        const deadline = Date.now() + Math.min(input.idleWaitMs ?? 0, 200);
        while (summary.kinesisRecordCount === 0 && summary.nextIterator && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 10));
          ({ summary, records } = shard.read(input.iterator, input.maxRecords, input.skipUntil));
        }
        const handle = `batch-${++this.handles}`;
        this.batches.set(handle, records);
        return { handle, ...summary };
      }),

      readParents: this.stub('readParents', (input) =>
        input.parentShardIds.map((shardId) => this.leases.parentStatus(shardId)),
      ),

      claimLease: this.stub('claimLease', (input) => {
        const lease = this.leases.claim(input.ref.shardId, input.owner, input.parentShardIds);
        return {
          counter: lease.counter,
          ...(lease.checkpoint !== undefined ? { checkpoint: lease.checkpoint } : {}),
          ownerSwitchesSinceCheckpoint: 0,
        };
      }),

      checkpoint: this.stub('checkpoint', (input) =>
        this.leases.checkpoint({
          shardId: input.ref.shardId,
          owner: input.owner,
          counter: input.counter,
          checkpoint: input.checkpoint,
          ...(input.childShardIds ? { childShardIds: input.childShardIds } : {}),
        }),
      ),

      releaseLease: this.stub('releaseLease', (input) => {
        this.leases.release(input.ref.shardId, input.owner, input.counter);
      }),

      initializeProcessor: this.stub('initializeProcessor', (input, call) => {
        // On the shared queue the shard lands on the pinned worker; on a worker's own queue (a planned move), there.
        const workerQueue = call.taskQueue.includes('@') ? call.taskQueue : this.pinnedQueue;
        this.instances.set(input.pin, workerQueue);
        // The lease comes with every pin; only a renewal (after a move) renews it.
        if (!input.lease?.renew) return { workerQueue };
        const lease = this.leases.renew(input.ref.shardId, input.lease.owner);
        this.pinCounters.set(input.pin, lease.counter);
        return {
          workerQueue,
          lease: {
            counter: lease.counter,
            ...(lease.checkpoint !== undefined ? { checkpoint: lease.checkpoint } : {}),
          },
        };
      }),

      processRecords: this.stub('processRecords', (input, call) => {
        if (this.instances.get(input.pin) !== call.taskQueue) {
          throw ApplicationFailure.nonRetryable(
            `no processor ${input.pin} on ${call.taskQueue}`,
            FailureType.ProcessorLost,
          );
        }
        const records = this.batches.get(input.handle);
        if (!records) {
          throw ApplicationFailure.nonRetryable(`batch ${input.handle} is gone`, FailureType.BatchLost);
        }
        this.batches.delete(input.handle);
        this.deliveries.push({ pin: input.pin, records, taskQueue: call.taskQueue });
        const checkpoint = this.checkpointPolicy(records, this.deliveries.length);
        if (!checkpoint) return { durationMs: 1, counter: this.counterOf(input.pin, input.lease) };
        // The processor's checkpoint is written on its worker, fenced, before processRecords returns.
        const counter = this.write(input.ref.shardId, input.pin, input.lease, checkpoint);
        return { checkpoint, checkpoints: 1, counter, durationMs: 1 };
      }),

      shutdownProcessor: this.stub('shutdownProcessor', (input, call) => {
        this.shutdowns.push({ pin: input.pin, reason: input.reason, taskQueue: call.taskQueue });
        this.instances.delete(input.pin);
        if (input.reason === 'ZOMBIE' || !input.lease) return {};
        let lease = input.lease;
        if (lease.renew) {
          lease = { ...lease, counter: this.leases.renew(input.ref.shardId, lease.owner).counter, renew: false };
        }
        let counter = this.counterOf(input.pin, lease);
        let checkpoint: ExtendedSequenceNumber | undefined;
        if (this.checkpointOnShutdown && input.lastProcessed) {
          checkpoint = input.lastProcessed;
          counter = this.write(input.ref.shardId, input.pin, lease, checkpoint);
        }
        if (input.shardEnd) {
          counter = this.write(
            input.ref.shardId,
            input.pin,
            { ...lease, counter },
            'SHARD_END',
            input.shardEnd.childShardIds,
          );
        }
        return { counter, ...(checkpoint ? { checkpoint } : {}) };
      }),
    };
  }
}

let bundled: ReturnType<typeof workflowBundle> | undefined;

/**
 * Runs `body` while two workers with the fake's activities poll: the workflow's (`taskQueue`, where control and
 * initialize activities go and local checkpoints run) and the pinned worker's (`fake.pinnedQueue`, where reads, batches
 * and shutdown go). Two queues, so tests can check which activity ran where.
 */
export async function withStubWorkers<T>(
  env: TestWorkflowEnvironment,
  fake: FakeKinesis,
  taskQueue: string,
  body: () => Promise<T>,
): Promise<T> {
  // One bundle for all tests of a file, even while others edit src/.
  bundled ??= workflowBundle();
  const bundle = await bundled;
  const activities = fake.activities();
  const [main, pinned, ...others] = await Promise.all([
    Worker.create({ connection: env.nativeConnection, taskQueue, workflowBundle: bundle, activities }),
    Worker.create({ connection: env.nativeConnection, taskQueue: fake.pinnedQueue, activities }),
    ...fake.otherWorkers.map((queue) =>
      Worker.create({ connection: env.nativeConnection, taskQueue: queue, activities }),
    ),
  ]);
  const withOthers = others.reduce<() => Promise<T>>((inner, worker) => () => worker.runUntil(inner()), body);
  return main.runUntil(pinned.runUntil(withOthers));
}

/** Application and stream of every stubbed consumer (the lease table defaults to the application name). */
export const STUB_APPLICATION = 'stub-app';
export const STUB_STREAM = 'stub-stream';

/** One test's world: a fake Kinesis and lease table, its task queues and the consumer's workflow id. */
export interface StubScenario {
  fake: FakeKinesis;
  taskQueue: string;
  workflowId: string;
  /** The consumer's input for a shard of the fake stream. */
  input(shardId: string, options?: ShardConsumerOptions, extra?: Partial<ShardConsumerInput>): ShardConsumerInput;
  /**
   * Starts the consumer with both workers polling, runs `during` (time skipping stays locked while it runs, so it sees
   * the workflow in real time), then waits for the result (time skipping unlocked).
   */
  run(
    input: ShardConsumerInput,
    during?: (handle: WorkflowHandleWithFirstExecutionRunId<typeof shardConsumerWorkflow>) => Promise<void>,
  ): Promise<ShardConsumerResult>;
  /** The lease owner the consumer writes: workflow id and first run id. */
  owner(): string;
}

export function stubScenario(
  env: TestWorkflowEnvironment,
  name: string,
  options: Partial<FakeKinesisOptions> = {},
): StubScenario {
  const taskQueue = uniqueName(name);
  const workflowId = uniqueName(`${name}-consumer`);
  const fake = new FakeKinesis({ pinnedQueue: `${taskQueue}@pinned-worker`, ...options });
  let firstRunId: string | undefined;
  return {
    fake,
    taskQueue,
    workflowId,
    input: (shardId, consumerOptions, extra) => ({
      applicationName: STUB_APPLICATION,
      streamName: STUB_STREAM,
      shardId,
      processor: 'recorder',
      // What the stream consumer passes (so no describeShard call): the shard's parents and hash-key range.
      parentShardIds: fake.shards.get(shardId)?.parentShardIds ?? [],
      ...(fake.shards.has(shardId) ? { hashKeyRange: fake.shard(shardId).hashKeyRange } : {}),
      ...(consumerOptions ? { options: consumerOptions } : {}),
      ...extra,
    }),
    run: (input, during) =>
      withStubWorkers(env, fake, taskQueue, async () => {
        const handle = await env.client.workflow.start(shardConsumerWorkflow, { taskQueue, workflowId, args: [input] });
        firstRunId = handle.firstExecutionRunId;
        if (during) await during(handle);
        return handle.result();
      }),
    owner: () => {
      if (!firstRunId) throw new Error('the consumer has not started');
      return leaseOwner(workflowId, firstRunId);
    },
  };
}

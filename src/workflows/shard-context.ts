/**
 * What every phase of a shard consumer shares: its input and options, its state and cursor, the activity proxies, and
 * the few steps every phase takes (pinning the shard to a worker, moving it, the lease it writes with).
 */
import {
  ApplicationFailure,
  condition,
  getExternalWorkflowHandle,
  log,
  patched,
  TimeoutFailure,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { FanOutConsumer, HashKeyRange, LeaseRef, LeaseState, MoveShard, ShardRef } from '../consumer-types';
import { ConsumerState } from '../consumer-types';
import type { ResolvedShardConsumerOptions, ShardConsumerOptions } from '../options';
import { KCL_APPLICATION, KCL_STATE } from '../search-attributes';
import type { PinIterator } from '../activities/processor-activities';
import { adoptIterator, type Pin, resumeFromCheckpoint, type ShardCursor } from '../shard-cursor';
import { FailureType } from '../failure-types';
import {
  checkpointActivities,
  controlActivities,
  initializeActivities,
  pinnedActivities,
  targetedInitializeActivities,
} from './shard-activities';
import { renderDetails } from './shard-details';
import { activityCause, failureMessage } from './shard-failures';
import { workerLostSignal } from './stream-consumer-signals';

export interface ShardConsumerInput {
  applicationName: string;
  streamName: string;
  shardId: string;
  /** Name of the record processor factory registered on the workers. */
  processor: string;
  /** Lease table. @default the application name (as in KCL) */
  tableName?: string;
  /** The shard's parents (both parents of a merge). @default looked up with ListShards */
  parentShardIds?: string[];
  /** The shard's hash-key range. @default looked up with ListShards */
  hashKeyRange?: HashKeyRange;
  options?: ShardConsumerOptions;
  /** Workflow id of the stream consumer to tell (signal) when this consumer ends. @default none */
  streamWorkflowId?: string;
  /**
   * The workflow task timeout of this consumer's next runs (continue-as-new), as its starter gave the first: the stream
   * consumer's `shardWorkflowTaskTimeoutMs`. @default DEFAULT_SHARD_WORKFLOW_TASK_TIMEOUT_MS (so a consumer started
   * before the default changed adopts the new one)
   */
  workflowTaskTimeoutMs?: number;
  /**
   * The stream identifier (`<account>:<stream>:<creation epoch>`) when the lease table is a multi-stream one: lease keys
   * are then `<identifier>:<shard id>`. @default a single-stream table (lease key = shard id)
   */
  streamIdentifier?: string;
  /**
   * The worker (its own task queue) the stream consumer's placement chose for the shard: the first pin tries it, then
   * any worker. @default any worker
   */
  target?: string;
  /**
   * `retrieval: 'fan-out'`: the registered stream consumer the shard subscribes through (the stream consumer passes
   * its own). @default registered (or looked up) by this consumer, named `consumerName`
   */
  fanOut?: FanOutConsumer;
  /** Set by continue-as-new, never by callers. */
  cursor?: ShardCursor;
}

/** A stop arrived while the shard waited for a worker with room: it ends without ever being pinned. */
export class StoppedWhileWaiting extends Error {
  constructor() {
    super('stopped while waiting for a worker with room');
    this.name = 'StoppedWhileWaiting';
  }
}

/** `maxBatchesPerRun`'s default before this release (runs recorded then replay with it). */
const LEGACY_MAX_BATCHES_PER_RUN = 50;

/** First and longest wait between placement attempts while every worker is full (a `moveShard` signal ends it). */
const WAIT_FOR_WORKER_FIRST_MS = 2_000;
const WAIT_FOR_WORKER_MAX_MS = 60_000;

/** Why a pinned worker's call or a targeted initialize did not go through there: another worker must take the shard. */
function workerRefused(error: unknown): boolean {
  const cause = activityCause(error);
  if (cause instanceof TimeoutFailure) return true;
  return (
    cause instanceof ApplicationFailure &&
    (cause.type === FailureType.WorkerFull ||
      cause.type === FailureType.WorkerDraining ||
      cause.type === FailureType.WorkerStopping ||
      cause.type === FailureType.ProcessorLost ||
      cause.type === FailureType.ProcessorNotRegistered)
  );
}

function isWorkerFull(error: unknown): boolean {
  const cause = activityCause(error);
  return cause instanceof ApplicationFailure && cause.type === FailureType.WorkerFull;
}

export class ShardContext {
  readonly ref: ShardRef;
  readonly control: ReturnType<typeof controlActivities>;
  readonly checkpoints = checkpointActivities();
  readonly initializer: ReturnType<typeof initializeActivities>;
  readonly searchable: boolean;
  state: ConsumerState = ConsumerState.WAITING_ON_PARENT;
  stopRequested = false;
  retryRequested = false;
  haltedReason: string | undefined;
  /** The latest planned move (`moveShard`), until the shard lands where it says. */
  move: MoveShard | undefined;
  /** The pinned worker is stopping: hand the shard over at the next batch boundary. */
  leaving: 'DRAINING' | undefined;
  /** The worker the shard just failed over from: the stream consumer is told at the next pin. */
  lostWorker: string | undefined;
  /** Workers this run has told the stream consumer about. */
  private readonly reportedLost = new Set<string>();
  /** The last placement attempt found every worker full: the shard waits (WAITING_FOR_WORKER) with no pin. */
  unplaced = false;
  parentShardIds: string[];
  /** The shard's hash-key range, once known (user records of aggregates outside it are dropped). */
  hashKeyRange: HashKeyRange | undefined;
  cursor: ShardCursor | undefined;
  /** `retrieval: 'fan-out'`: the stream consumer the shard subscribes through, once registered. */
  fanOut: FanOutConsumer | undefined;

  constructor(
    readonly input: ShardConsumerInput,
    readonly options: ResolvedShardConsumerOptions,
    readonly tableName: string,
  ) {
    this.ref = {
      applicationName: input.applicationName,
      streamName: input.streamName,
      shardId: input.shardId,
      ...(input.streamIdentifier ? { streamIdentifier: input.streamIdentifier } : {}),
    };
    this.control = controlActivities(options);
    this.initializer = initializeActivities(options);
    this.searchable = workflowInfo().typedSearchAttributes.get(KCL_APPLICATION) !== undefined;
    this.cursor = input.cursor;
    this.fanOut = input.fanOut;
    // A continued run carries the search attributes over: it is PROCESSING already (no upsert, an action, to say so).
    if (input.cursor) this.state = ConsumerState.PROCESSING;
    this.parentShardIds = input.parentShardIds ?? input.cursor?.parentShardIds ?? [];
    this.hashKeyRange = input.cursor?.hashKeyRange ?? input.hashKeyRange;
    this.move = input.cursor
      ? input.cursor.move
      : input.target
        ? { to: input.target, reason: 'BALANCE', seq: 0 }
        : undefined;
    if (this.cursor) delete this.cursor.move;
  }

  /**
   * The pinned worker is stopping: the shard is handed over at the loop's head. (Runs recorded before handoffs existed
   * moved the shard as a failover, and replay the same way.)
   */
  workerStopping(why: string): void {
    if (patched('graceful-handoff')) this.leaving = 'DRAINING';
    else this.unpin(why);
  }

  /**
   * Whether the run has done its batches (or windows). The default went from 50 to 20: a run recorded before that,
   * still running when a worker of this release replays it, keeps going to 50.
   */
  runIsFull(done: number): boolean {
    const limit = this.options.maxBatchesPerRun;
    if (done < limit) return false;
    if (this.input.options?.maxBatchesPerRun !== undefined || done >= LEGACY_MAX_BATCHES_PER_RUN) return true;
    return patched('batches-per-run-20');
  }

  /** A `moveShard` signal: the newest wins. */
  requestMove(move: MoveShard): void {
    if (this.move && move.seq < this.move.seq) return;
    this.move = move;
  }

  /**
   * True when the shard should leave its worker at this batch boundary: its worker is stopping, or a planned move names
   * another worker (or any other, when it names none).
   */
  moveRequested(): boolean {
    const pin = this.cursor?.pin;
    if (!pin) return false;
    if (this.leaving) return true;
    if (!this.move) return false;
    if (this.move.to === pin.workerQueue) {
      this.move = undefined; // already there
      return false;
    }
    return true;
  }

  /** The cursor, once the consumer has started reading. */
  get c(): ShardCursor {
    if (!this.cursor) throw new Error('shard consumer has no cursor yet');
    return this.cursor;
  }

  /**
   * `retrieval: 'fan-out'`: the stream consumer to subscribe through, registered (or looked up) if the starter gave
   * none. Nothing happens for `polling`.
   */
  async ensureFanOut(): Promise<void> {
    if (this.options.retrieval !== 'fan-out' || this.fanOut) return;
    this.fanOut = await this.control.registerStreamConsumer({
      streamName: this.ref.streamName,
      consumerName: this.options.consumerName ?? this.ref.applicationName,
    });
  }

  /** The "current details" the Temporal UI shows: state and position (no history cost). */
  showDetails(): void {
    renderDetails(this);
  }

  setState(next: ConsumerState): void {
    if (next === this.state) return;
    this.state = next;
    if (this.searchable) upsertSearchAttributes([{ key: KCL_STATE, value: next }]);
    this.showDetails();
  }

  /** The lease as activities that write checkpoints on the worker get it. */
  lease(): LeaseRef {
    const c = this.c;
    return {
      tableName: this.tableName,
      owner: c.owner,
      counter: c.counter,
      ...(c.renewLease ? { renew: true } : {}),
    };
  }

  /** Takes in what activities on the worker wrote: the counter they reached, and the checkpoint. */
  adoptLease(state: { counter?: number | undefined; checkpoint?: ShardCursor['checkpoint'] }, renewed = false): void {
    const c = this.c;
    if (state.counter !== undefined) c.counter = Math.max(c.counter, state.counter);
    if (state.checkpoint !== undefined) c.checkpoint = state.checkpoint;
    if (renewed) c.renewLease = false;
  }

  /** Activities on the worker the shard is pinned to (`priorAttempts`: a window already tried the batch). */
  pinned(pin: Pin, priorAttempts = 0) {
    return pinnedActivities(this.options, pin.workerQueue, this.ref.shardId, priorAttempts);
  }

  /**
   * Pins the shard to a worker: a new processor instance is created and initialized there. A planned move's target is
   * tried first (only it may take the shard), then any worker of the shared queue. After a move the lease is renewed
   * first, and reading resumes from the durable checkpoint the table has. While every worker is full the shard waits
   * (WAITING_FOR_WORKER) until a move names a worker with room, or a later attempt finds one; a stop meanwhile throws
   * {@link StoppedWhileWaiting}.
   */
  async pin(): Promise<Pin> {
    const c = this.c;
    if (c.pin) return c.pin;
    // (`patched`: runs recorded before this signal existed replay without it.)
    if (
      this.lostWorker &&
      !this.reportedLost.has(this.lostWorker) &&
      this.input.streamWorkflowId &&
      patched('report-lost-worker')
    ) {
      // Once per worker in a run: an overloaded worker whose shards fail over again and again is reported once.
      this.reportedLost.add(this.lostWorker);
      // Not awaited: the signal goes out with the next command, and the failover does not wait for it.
      void getExternalWorkflowHandle(this.input.streamWorkflowId)
        .signal(workerLostSignal, { workerQueue: this.lostWorker })
        .catch((error: unknown) => log.warn('could not tell the stream consumer', { error: String(error) }));
    }
    this.lostWorker = undefined;
    let waitMs = WAIT_FOR_WORKER_FIRST_MS;
    let resumeState: ConsumerState | undefined;
    for (;;) {
      const move = this.move;
      let placed = move?.to ? await this.initializeOn(move.to) : undefined;
      if (move && this.move === move) this.move = undefined; // tried: the fallback or the next move decides now
      if (!placed) {
        try {
          placed = await this.initializeOn(undefined);
        } catch (error) {
          if (!isWorkerFull(error)) throw error;
        }
      }
      if (placed) {
        if (resumeState !== undefined) this.setState(resumeState);
        return this.landed(placed);
      }
      this.unplaced = true;
      log.warn('every worker that answered is full; the shard waits for room', { shardId: this.ref.shardId, waitMs });
      resumeState ??= this.state;
      this.setState(ConsumerState.WAITING_FOR_WORKER);
      await condition(() => this.stopRequested || this.move !== undefined, waitMs);
      if (this.stopRequested) throw new StoppedWhileWaiting();
      waitMs = Math.min(WAIT_FOR_WORKER_MAX_MS, waitMs * 2);
    }
  }

  /**
   * One attempt to create the shard's processor: on `workerQueue` (a planned move; undefined when that worker cannot
   * take it) or on any worker of the shared queue (throws what it failed with).
   */
  private async initializeOn(
    workerQueue: string | undefined,
  ): Promise<{ id: string; workerQueue: string; lease?: LeaseState; iterator?: PinIterator } | undefined> {
    const c = this.c;
    c.pins++;
    const id = `${c.owner}/${c.pins}`;
    const request = {
      ref: this.ref,
      processorName: this.input.processor,
      pin: id,
      startingPosition: c.checkpoint ?? c.startingPosition,
      // The lease: renewed first after a move; always read for its pending checkpoint (told to `initialize`).
      lease: this.lease(),
      // The worker takes the first iterator along (one activity less per pin).
      ...(c.iterator === undefined ? { iteratorAt: c.resumeFrom } : {}),
      ...(this.fanOut ? { fanOut: this.fanOut } : {}),
    };
    if (workerQueue === undefined) return { id, ...(await this.initializer.initializeProcessor(request)) };
    try {
      return { id, ...(await targetedInitializeActivities(this.options, workerQueue)(request)) };
    } catch (error) {
      if (!workerRefused(error)) throw error;
      log.info('the chosen worker did not take the shard; any worker may', {
        shardId: this.ref.shardId,
        target: workerQueue,
        error: failureMessage(error),
      });
      return undefined;
    }
  }

  /** The shard is pinned: adopt what the worker read from the lease. */
  private landed(placed: { id: string; workerQueue: string; lease?: LeaseState; iterator?: PinIterator }): Pin {
    const c = this.c;
    const { lease } = placed;
    if (lease) {
      const moved = lease.checkpoint !== undefined && JSON.stringify(lease.checkpoint) !== JSON.stringify(c.checkpoint);
      this.adoptLease(lease, true);
      if (moved) {
        // The worker that lost the shard wrote checkpoints this workflow never heard of: resume after them.
        Object.assign(c, resumeFromCheckpoint(c));
        c.iterator = undefined;
      }
    }
    // The iterator the worker took along, if it is where reading resumes (it is not when the lease moved elsewhere).
    if (c.iterator === undefined && placed.iterator) {
      const { position, ...fresh } = placed.iterator;
      if (JSON.stringify(position) === JSON.stringify(c.resumeFrom)) adoptIterator(c, fresh);
    }
    this.unplaced = false;
    c.pin = { id: placed.id, workerQueue: placed.workerQueue };
    if (this.move?.to === placed.workerQueue) this.move = undefined;
    this.showDetails();
    return c.pin;
  }

  /** The pinned worker is gone: the next instance resumes from the durable checkpoint, as a new KCL lease holder would. */
  unpin(why: string): void {
    const c = this.c;
    if (c.pin) this.lostWorker = c.pin.workerQueue;
    log.warn('moving shard to another worker', { shardId: this.ref.shardId, why, from: c.pin?.workerQueue });
    c.counters.workerMoves++;
    this.detach();
  }

  /**
   * Leaves the pinned worker, keeping the lease (a failover, or a handoff once the old processor shut down): the next pin
   * renews the lease, which fences the old worker out, and reading resumes from the durable checkpoint.
   */
  detach(): void {
    const c = this.c;
    c.pin = undefined;
    c.renewLease = true;
    Object.assign(c, resumeFromCheckpoint(c));
    c.iterator = undefined;
    c.quietReads = 0;
    this.leaving = undefined;
  }
}

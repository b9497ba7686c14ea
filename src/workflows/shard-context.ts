/**
 * What every phase of a shard consumer shares: its input and options, its state and cursor, the activity proxies, and
 * the few steps every phase takes (pinning the shard to a worker, moving it, the lease it writes with).
 */
import { log, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { HashKeyRange, LeaseRef, ShardRef } from '../consumer-types';
import { ConsumerState } from '../consumer-types';
import type { ResolvedShardConsumerOptions, ShardConsumerOptions } from '../options';
import { KCL_APPLICATION, KCL_STATE } from '../search-attributes';
import { type Pin, resumeFromCheckpoint, type ShardCursor } from '../shard-cursor';
import { checkpointActivities, controlActivities, initializeActivities, pinnedActivities } from './shard-activities';
import { renderDetails } from './shard-details';

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
  /** Set by continue-as-new, never by callers. */
  cursor?: ShardCursor;
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
  parentShardIds: string[];
  /** The shard's hash-key range, once known (user records of aggregates outside it are dropped). */
  hashKeyRange: HashKeyRange | undefined;
  cursor: ShardCursor | undefined;

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
    // A continued run carries the search attributes over: it is PROCESSING already (no upsert, an action, to say so).
    if (input.cursor) this.state = ConsumerState.PROCESSING;
    this.parentShardIds = input.parentShardIds ?? input.cursor?.parentShardIds ?? [];
    this.hashKeyRange = input.cursor?.hashKeyRange ?? input.hashKeyRange;
  }

  /** The cursor, once the consumer has started reading. */
  get c(): ShardCursor {
    if (!this.cursor) throw new Error('shard consumer has no cursor yet');
    return this.cursor;
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
   * Pins the shard to a worker: a new processor instance is created and initialized there. After a move the lease is
   * renewed first, and reading resumes from the durable checkpoint the table has.
   */
  async pin(): Promise<Pin> {
    const c = this.c;
    if (c.pin) return c.pin;
    c.pins++;
    const id = `${c.owner}/${c.pins}`;
    const { workerQueue, lease } = await this.initializer.initializeProcessor({
      ref: this.ref,
      processorName: this.input.processor,
      pin: id,
      startingPosition: c.checkpoint ?? c.startingPosition,
      // The lease: renewed first after a move; always read for its pending checkpoint (told to `initialize`).
      lease: this.lease(),
    });
    if (lease) {
      const moved = lease.checkpoint !== undefined && JSON.stringify(lease.checkpoint) !== JSON.stringify(c.checkpoint);
      this.adoptLease(lease, true);
      if (moved) {
        // The worker that lost the shard wrote checkpoints this workflow never heard of: resume after them.
        Object.assign(c, resumeFromCheckpoint(c));
        c.iterator = undefined;
      }
    }
    c.pin = { id, workerQueue };
    this.showDetails();
    return c.pin;
  }

  /** The pinned worker is gone: the next instance resumes from the durable checkpoint, as a new KCL lease holder would. */
  unpin(why: string): void {
    const c = this.c;
    log.warn('moving shard to another worker', { shardId: this.ref.shardId, why, from: c.pin?.workerQueue });
    c.pin = undefined;
    c.counters.workerMoves++;
    c.renewLease = true;
    Object.assign(c, resumeFromCheckpoint(c));
    c.iterator = undefined;
    c.quietReads = 0;
  }
}

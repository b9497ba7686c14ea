/**
 * ShardConsumerWorkflow: one durable owner per shard. waitOnParents → claim the lease → initialize the processor → loop
 * { getRecords (prefetched) → processRecords → checkpoint } → continue-as-new → shutdown. A port of vmware-go-kcl's shard
 * consumer (worker/shard-consumer.go) that keeps its loop semantics and fixes what it and Java KCL get wrong.
 */
import {
  ActivityFailure,
  allHandlersFinished,
  ApplicationFailure,
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  getExternalWorkflowHandle,
  log,
  setCurrentDetails,
  setHandler,
  TimeoutFailure,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { GetRecordsInput } from '../activities';
import type {
  BatchSummary,
  ChildShard,
  ConsumerState as ConsumerStateType,
  DeadLetterDestination,
  HashKeyRange,
  ShardConsumerResult,
  ShardProgress,
  ShardRef,
} from '../consumer-types';
import { ConsumerState } from '../consumer-types';
import { FailureType } from '../failure-types';
import { defaultTableName, leaseOwner, leaseTableNameProblem } from '../ids';
import { type ShardConsumerOptions, validateShardConsumerOptions } from '../options';
import { type Checkpoint, type ExtendedSequenceNumber, formatPosition, SentinelCheckpoint } from '../positions';
import { KCL_APPLICATION, KCL_STATE } from '../search-attributes';
import { checkpointActivities, controlActivities, initializeActivities, pinnedActivities } from './shard-activities';
import { shardEndedSignal } from './stream-consumer-signals';
import {
  advance,
  emptyCounters,
  recordDeadLetter,
  type Pin,
  resumeFromCheckpoint,
  type ShardCursor,
  skipAfter,
  startPosition,
} from './shard-cursor';

export type { ShardCursor } from './shard-cursor';

/** Stop consuming: the processor gets `shutdown(REQUESTED)` with a working checkpointer, then the workflow completes. */
export const stopSignal = defineSignal('stop');
/** The consumer's position, counters and state. */
export const progressQuery = defineQuery<ShardProgress>('progress');
/** A HALTED consumer (processing kept failing with `onProcessingFailure: 'HALT'`) tries the batch again. */
export const retrySignal = defineSignal('retry');

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
   * The stream identifier (`<account>:<stream>:<creation epoch>`) when the lease table is a multi-stream one: lease keys
   * are then `<identifier>:<shard id>`. @default a single-stream table (lease key = shard id)
   */
  streamIdentifier?: string;
  /** Set by continue-as-new, never by callers. */
  cursor?: ShardCursor;
}

function invalidInput(message: string): ApplicationFailure {
  return ApplicationFailure.create({ type: FailureType.InvalidConfig, message, nonRetryable: true });
}

/** The failure behind an activity's error: an ActivityFailure's cause, or the error itself for a local activity. */
function activityCause(error: unknown): unknown {
  // The SDK wraps a failed activity in an ActivityFailure, but hands a failed LOCAL activity (the checkpoint) to the
  // workflow as its own failure, unwrapped.
  return error instanceof ActivityFailure ? error.cause : error;
}

/** The failure type behind an activity failure, or 'Timeout' when the worker never answered. */
function failureKind(error: unknown): string | undefined {
  const cause = activityCause(error);
  if (cause instanceof ApplicationFailure) return cause.type ?? undefined;
  if (cause instanceof TimeoutFailure) return 'Timeout';
  return undefined;
}

export async function shardConsumerWorkflow(input: ShardConsumerInput): Promise<ShardConsumerResult> {
  for (const field of ['applicationName', 'streamName', 'shardId', 'processor'] as const) {
    if (typeof input?.[field] !== 'string' || input[field].length === 0) {
      throw invalidInput(`shard consumer input needs a non-empty ${field}`);
    }
  }
  const validation = validateShardConsumerOptions(input.options);
  if (!validation.ok) throw invalidInput(`invalid shard consumer options: ${validation.issues.join('; ')}`);
  const options = validation.options;
  const ref: ShardRef = {
    applicationName: input.applicationName,
    streamName: input.streamName,
    shardId: input.shardId,
    ...(input.streamIdentifier ? { streamIdentifier: input.streamIdentifier } : {}),
  };
  const tableName = input.tableName ?? defaultTableName(input.applicationName);
  const tableProblem = leaseTableNameProblem(tableName);
  if (tableProblem) throw invalidInput(tableProblem);
  const control = controlActivities(options);
  const checkpoints = checkpointActivities();
  const initializer = initializeActivities(options);
  const info = workflowInfo();
  const searchable = info.typedSearchAttributes.get(KCL_APPLICATION) !== undefined;

  let state: ConsumerStateType = ConsumerState.WAITING_ON_PARENT;
  let stopRequested = false;
  let retryRequested = false;
  let haltedReason: string | undefined;
  let cursor: ShardCursor | undefined = input.cursor;
  let parentShardIds = input.parentShardIds ?? cursor?.parentShardIds ?? [];

  /** The "current details" the Temporal UI shows: state and position, refreshed as the consumer moves (no history cost). */
  const showDetails = () => {
    const counters = cursor?.counters;
    setCurrentDetails(
      [
        `**${state}** — shard \`${ref.shardId}\` of stream \`${ref.streamName}\` (application \`${ref.applicationName}\`)`,
        '',
        `- checkpoint: \`${formatPosition(cursor?.checkpoint)}\`; last processed: \`${formatPosition(cursor?.lastProcessed)}\``,
        `- ${counters?.recordsProcessed ?? 0} records, ${counters?.batches ?? 0} batches, ${cursor?.millisBehindLatest ?? '-'} ms behind latest`,
        ...(counters && (counters.deaggregationFailures > 0 || counters.deadLetteredRecords > 0)
          ? [
              `- ${counters.deaggregationFailures} corrupt aggregates skipped, ${counters.deadLetteredRecords} records dead-lettered`,
            ]
          : []),
        ...(parentShardIds.length > 0 ? [`- parents: ${parentShardIds.map((id) => `\`${id}\``).join(', ')}`] : []),
        ...(cursor?.pin ? [`- worker: \`${cursor.pin.workerQueue}\``] : []),
        ...(haltedReason ? [`- halted: ${haltedReason} (signal \`retry\` to try again)`] : []),
      ].join('\n'),
    );
  };
  const setState = (next: ConsumerStateType) => {
    if (next === state) return;
    state = next;
    if (searchable) upsertSearchAttributes([{ key: KCL_STATE, value: next }]);
    showDetails();
  };
  setHandler(stopSignal, () => {
    stopRequested = true;
  });
  setHandler(retrySignal, () => {
    retryRequested = true;
  });
  showDetails();
  setHandler(progressQuery, (): ShardProgress => ({
    ...ref,
    state,
    parentShardIds,
    ...(cursor?.checkpoint !== undefined ? { checkpoint: cursor.checkpoint } : {}),
    ...(cursor?.lastProcessed ? { lastProcessed: cursor.lastProcessed } : {}),
    ...(cursor?.millisBehindLatest !== undefined ? { millisBehindLatest: cursor.millisBehindLatest } : {}),
    counters: cursor?.counters ?? emptyCounters(),
    recentDeaggregationFailures: cursor?.recentDeaggregationFailures ?? [],
    recentDeadLetters: cursor?.recentDeadLetters ?? [],
    ...(cursor?.pin ? { worker: cursor.pin.workerQueue } : {}),
    ...(haltedReason ? { haltedReason } : {}),
    run: cursor?.run ?? 1,
  }));

  /** Ends the consumer: tells the stream consumer (if any) and returns the result. */
  async function result(
    reason: ShardConsumerResult['reason'],
    childShards: ChildShard[] = [],
  ): Promise<ShardConsumerResult> {
    setState(ConsumerState.ENDED);
    if (input.streamWorkflowId) {
      try {
        await getExternalWorkflowHandle(input.streamWorkflowId).signal(shardEndedSignal, {
          shardId: ref.shardId,
          reason,
          childShards,
        });
      } catch (error) {
        // The stream consumer may be gone (stopped, or never existed): its periodic shard listing catches up.
        log.warn('could not tell the stream consumer that this shard ended', { error: String(error) });
      }
    }
    return {
      ...ref,
      reason,
      ...(cursor?.checkpoint !== undefined ? { checkpoint: cursor.checkpoint } : {}),
      ...(cursor?.lastProcessed ? { lastProcessed: cursor.lastProcessed } : {}),
      counters: cursor?.counters ?? emptyCounters(),
      childShards,
    };
  }

  // ---- First run: wait for the parents, claim the lease, decide where to start. ----
  if (!cursor) {
    let hashKeyRange = input.hashKeyRange;
    if (input.parentShardIds === undefined || hashKeyRange === undefined) {
      const description = await control.describeShard({ streamName: ref.streamName, shardId: ref.shardId });
      parentShardIds = input.parentShardIds ?? description.parentShardIds;
      hashKeyRange ??= description.hashKeyRange;
    }
    // Every parent (both parents of a merge) must be done before a child starts, or records of one partition key could
    // be delivered out of order. A parent with no lease has not ended: wait for it, unless it has aged out of the stream.
    while (parentShardIds.length > 0) {
      const parents = await control.readParents({ tableName, ref, parentShardIds });
      const waitingFor = parents.filter((parent) => parent.state !== 'ENDED' && parent.state !== 'AGED_OUT');
      if (waitingFor.length === 0) break;
      log.info('waiting for parent shards', {
        shardId: ref.shardId,
        waitingFor: waitingFor.map((p) => `${p.shardId}:${p.state}`),
      });
      if (await condition(() => stopRequested, options.parentShardPollIntervalMs)) return result('REQUESTED');
    }
    setState(ConsumerState.INITIALIZING);
    const owner = leaseOwner(info.workflowId, info.firstExecutionRunId);
    const lease = await control.claimLease({
      tableName,
      ref,
      owner,
      parentShardIds,
      ...(hashKeyRange ? { hashKeyRange } : {}),
    });
    if (lease.checkpoint === SentinelCheckpoint.SHARD_END) {
      cursor = newCursor(
        owner,
        lease.counter,
        lease.checkpoint,
        { type: 'TRIM_HORIZON' },
        SentinelCheckpoint.SHARD_END,
      );
      await control.releaseLease({ tableName, ref, owner, counter: lease.counter });
      return result('ALREADY_ENDED');
    }
    const start = startPosition(lease.checkpoint, parentShardIds.length > 0, options);
    if ('invalid' in start) throw invalidInput(`shard ${ref.shardId}: ${start.invalid}`);
    cursor = newCursor(owner, lease.counter, lease.checkpoint, start.resumeFrom, start.startingPosition);
    if (start.skipUntil) cursor.skipUntil = start.skipUntil;
    cursor.parentShardIds = parentShardIds;
    if (hashKeyRange) cursor.hashKeyRange = hashKeyRange;
  }
  const c: ShardCursor = cursor;

  function newCursor(
    owner: string,
    counter: number,
    checkpoint: Checkpoint | undefined,
    resumeFrom: ShardCursor['resumeFrom'],
    startingPosition: Checkpoint,
  ): ShardCursor {
    return {
      owner,
      counter,
      parentShardIds,
      origin: resumeFrom,
      startingPosition,
      ...(checkpoint !== undefined ? { checkpoint } : {}),
      resumeFrom,
      pins: 0,
      counters: emptyCounters(),
      recentDeaggregationFailures: [],
      recentDeadLetters: [],
      run: 1,
    };
  }

  // ---- Helpers of the loop. ----
  const pinned = (pin: Pin) => pinnedActivities(options, pin.workerQueue, ref.shardId);

  /** Pins the shard to a worker: a new processor instance is created and initialized there. */
  async function pin(): Promise<Pin> {
    if (c.pin) return c.pin;
    c.pins++;
    const id = `${c.owner}/${c.pins}`;
    const { workerQueue } = await initializer.initializeProcessor({
      ref,
      processorName: input.processor,
      pin: id,
      startingPosition: c.checkpoint ?? c.startingPosition,
    });
    c.pin = { id, workerQueue };
    return c.pin;
  }

  /** The pinned worker is gone: the next instance resumes from the durable checkpoint, as a new KCL lease holder would. */
  function unpin(why: string): void {
    log.warn('moving shard to another worker', { shardId: ref.shardId, why, from: c.pin?.workerQueue });
    c.pin = undefined;
    c.counters.workerMoves++;
    Object.assign(c, resumeFromCheckpoint(c));
    c.iterator = undefined;
  }

  /** Writes a checkpoint, fenced on owner and counter; false if the lease was lost (another owner took it). */
  async function writeCheckpoint(
    checkpoint: ExtendedSequenceNumber | typeof SentinelCheckpoint.SHARD_END,
    childShardIds?: string[],
  ): Promise<boolean> {
    try {
      const written = await checkpoints.checkpoint({
        tableName,
        ref,
        owner: c.owner,
        counter: c.counter,
        checkpoint,
        ...(childShardIds ? { childShardIds } : {}),
      });
      c.counter = written.counter;
      c.checkpoint = checkpoint;
      c.counters.checkpoints++;
      return true;
    } catch (error) {
      if (failureKind(error) === FailureType.CheckpointConflict) {
        log.warn('lease lost', { shardId: ref.shardId, error: String((activityCause(error) as Error).message) });
        return false;
      }
      throw error;
    }
  }

  /** Ends as a zombie: the processor is told (without a checkpointer) and nothing more is written. */
  async function zombie(): Promise<ShardConsumerResult> {
    setState(ConsumerState.SHUTTING_DOWN);
    if (c.pin) {
      await pinned(c.pin)
        .process.shutdownProcessor({
          ref,
          processorName: input.processor,
          pin: c.pin.id,
          reason: 'ZOMBIE',
          startingPosition: c.startingPosition,
        })
        .catch((error: unknown) => log.warn('zombie shutdown failed', { shardId: ref.shardId, error: String(error) }));
    }
    return result('ZOMBIE');
  }

  /** shutdown(TERMINATE | REQUESTED) with a working checkpointer; writes what it asks for; then SHARD_END at shard end. */
  async function finish(
    reason: 'TERMINATE' | 'REQUESTED',
    childShards: ChildShard[] = [],
  ): Promise<ShardConsumerResult> {
    setState(ConsumerState.SHUTTING_DOWN);
    const request = {
      ref,
      processorName: input.processor,
      reason,
      startingPosition: c.checkpoint ?? c.startingPosition,
      ...(c.checkpoint !== undefined ? { lastCheckpoint: c.checkpoint } : {}),
      ...(c.lastProcessed ? { lastProcessed: c.lastProcessed } : {}),
    };
    let outcome;
    try {
      const p = await pin();
      outcome = await pinned(p).process.shutdownProcessor({ ...request, pin: p.id });
    } catch (error) {
      const kind = failureKind(error);
      if (kind !== 'Timeout' && kind !== FailureType.ProcessorLost && kind !== FailureType.WorkerDraining) throw error;
      // The pinned worker is gone: shut down a fresh instance on any worker, so shutdown is still called.
      outcome = await initializer.shutdownProcessor({ ...request, pin: `${c.owner}/${c.pins}` });
    }
    if (outcome.checkpoint && !(await writeCheckpoint(outcome.checkpoint))) return zombie();
    if (reason === 'TERMINATE') {
      // The consumer itself records SHARD_END, so the children never wait forever on a processor that did not checkpoint.
      if (
        !(await writeCheckpoint(
          SentinelCheckpoint.SHARD_END,
          childShards.map((child) => child.shardId),
        ))
      )
        return zombie();
    }
    await control.releaseLease({ tableName, ref, owner: c.owner, counter: c.counter });
    return result(reason, childShards);
  }

  /**
   * HALTED: the batch keeps failing. Waits for a `retry` signal (true: try the batch again) or a stop (false). Nothing is
   * skipped meanwhile; the reason shows in the progress query and the UI.
   */
  async function halt(reason: string): Promise<boolean> {
    log.error('processing keeps failing; shard halted until a retry signal', { shardId: ref.shardId, reason });
    haltedReason = reason;
    setState(ConsumerState.HALTED);
    retryRequested = false;
    await condition(() => retryRequested || stopRequested);
    haltedReason = undefined;
    setState(ConsumerState.PROCESSING);
    return retryRequested && !stopRequested;
  }

  /** Sends a batch that kept failing to the dead-letter destination (whole, or only the records that fail alone). */
  async function deadLetter(
    p: Pin,
    batch: BatchSummary,
    error: string,
    destination: DeadLetterDestination,
  ): Promise<{ records: number; bytes: number } | 'RETRY' | 'ZOMBIE'> {
    let outcome;
    try {
      outcome = await pinned(p).deadLetter.deadLetterBatch({
        ref,
        pin: p.id,
        handle: batch.handle,
        destination,
        granularity: options.deadLetterGranularity,
        error,
        ...(c.checkpoint !== undefined ? { lastCheckpoint: c.checkpoint } : {}),
      });
    } catch (failure) {
      const kind = failureKind(failure);
      if (kind === FailureType.BatchLost) return 'RETRY';
      if (kind === 'Timeout' || kind === FailureType.ProcessorLost || kind === FailureType.WorkerDraining) {
        unpin(kind);
        return 'RETRY';
      }
      throw failure;
    }
    c.counters.deadLetteredRecords += outcome.deadLettered;
    if (outcome.deadLettered > 0) c.counters.deadLetteredBatches++;
    if (outcome.first && outcome.last) {
      recordDeadLetter(c, { first: outcome.first, last: outcome.last, records: outcome.deadLettered, error });
    }
    log.warn('dead-lettered records of a failing batch', {
      shardId: ref.shardId,
      deadLettered: outcome.deadLettered,
      delivered: outcome.delivered,
    });
    if (outcome.checkpoint && !(await writeCheckpoint(outcome.checkpoint))) return 'ZOMBIE';
    return { records: outcome.deadLettered, bytes: outcome.deadLetteredBytes };
  }

  /** What one GetRecords call needs: the iterator, and what to drop from what it returns. */
  const readInput = (iterator: string, skipUntil: ExtendedSequenceNumber | undefined): GetRecordsInput => ({
    ref,
    iterator,
    maxRecords: options.maxRecords,
    minIntervalMs: options.minTimeBetweenReadsMs,
    readAhead: options.prefetch,
    ...(c.hashKeyRange ? { hashKeyRange: c.hashKeyRange } : {}),
    ...(skipUntil ? { skipUntil } : {}),
  });

  // ---- The loop. ----
  setState(ConsumerState.PROCESSING);
  let pending: { pinId: string; read: Promise<BatchSummary> } | undefined;
  let batchesThisRun = 0;
  const idleMs = options.idleTimeBetweenReadsMs;
  const continueAsNewDue = () => batchesThisRun >= options.maxBatchesPerRun || workflowInfo().continueAsNewSuggested;

  for (;;) {
    if (stopRequested) return finish('REQUESTED');
    if (continueAsNewDue()) {
      if (pending) await pending.read.catch(() => undefined);
      await condition(allHandlersFinished);
      if (stopRequested) return finish('REQUESTED');
      return continueAsNew<typeof shardConsumerWorkflow>({
        ...input,
        parentShardIds,
        cursor: { ...c, run: c.run + 1 },
      });
    }
    const p = await pin();
    const activities = pinned(p);
    if (c.iterator === undefined) {
      const fresh = await control.getShardIterator({ ref, position: c.resumeFrom });
      c.iterator = fresh.iterator;
      if (c.resumeFrom.type === 'LATEST') {
        // LATEST means "from now": pin it to the time this iterator was taken, so re-reading after an expired iterator or a
        // worker move does not skip what arrived in between.
        c.resumeFrom = { type: 'AT_TIMESTAMP', timestamp: fresh.obtainedAt };
        if (c.origin.type === 'LATEST') c.origin = c.resumeFrom;
      }
    }

    let batch: BatchSummary;
    try {
      const read =
        pending && pending.pinId === p.id
          ? pending.read
          : activities.read.getRecords(readInput(c.iterator, c.skipUntil));
      pending = undefined;
      batch = await read;
    } catch (error) {
      pending = undefined;
      const kind = failureKind(error);
      if (kind === FailureType.ExpiredIterator) {
        // The workflow knows exactly what it processed: resume right after it, not at the older checkpoint.
        c.counters.expiredIterators++;
        c.iterator = undefined;
        continue;
      }
      if (kind === 'Timeout' || kind === FailureType.WorkerDraining) {
        unpin(kind);
        continue;
      }
      throw error;
    }

    const atShardEnd = batch.nextIterator === undefined;
    const willIdle = batch.kinesisRecordCount === 0 && batch.millisBehindLatest < idleMs;
    if (options.prefetch && !atShardEnd && !willIdle && batchesThisRun + 1 < options.maxBatchesPerRun) {
      // Prefetch: read the next batch while this one is processed (delivery order is unchanged).
      const read = activities.read.getRecords(readInput(batch.nextIterator!, skipAfter(c.skipUntil, batch)));
      read.catch(() => undefined);
      pending = { pinId: p.id, read };
    }

    let deadLettered: { records: number; bytes: number } | undefined;
    if (batch.recordCount > 0 || options.callProcessRecordsEvenForEmptyRecordList) {
      let outcome;
      try {
        outcome = await activities.process.processRecords({
          ref,
          pin: p.id,
          handle: batch.handle,
          ...(c.checkpoint !== undefined ? { lastCheckpoint: c.checkpoint } : {}),
          ...(c.lastProcessed ? { lastProcessed: c.lastProcessed } : {}),
        });
      } catch (error) {
        pending = undefined;
        const kind = failureKind(error);
        if (kind === FailureType.BatchLost) continue; // read again from the same iterator
        if (kind === 'Timeout' || kind === FailureType.ProcessorLost || kind === FailureType.WorkerDraining) {
          unpin(kind);
          continue;
        }
        if (kind !== FailureType.ProcessorFailed && kind !== FailureType.CheckpointOutOfRange) throw error;
        // processingRetry.maximumAttempts are spent: halt, or dead-letter and go on. Never skip silently.
        const message = String((activityCause(error) as Error).message);
        if (options.onProcessingFailure === 'HALT' || !options.deadLetter) {
          if (await halt(message)) continue; // read the same batch again
          return finish('REQUESTED');
        }
        const handled = await deadLetter(p, batch, message, options.deadLetter);
        if (handled === 'RETRY') continue;
        if (handled === 'ZOMBIE') return zombie();
        deadLettered = handled;
        outcome = { durationMs: 0 };
      }
      // A checkpoint asked for while processing is durable before the next batch is delivered.
      if (outcome.checkpoint && !(await writeCheckpoint(outcome.checkpoint))) return zombie();
    }
    advance(c, batch, deadLettered);
    batchesThisRun++;
    showDetails();

    if (atShardEnd) {
      log.info('shard ended', { shardId: ref.shardId, children: batch.childShards?.map((child) => child.shardId) });
      return finish('TERMINATE', batch.childShards ?? []);
    }
    // As KCL: idle only when the read returned nothing and the consumer is at (or near) the tip of the shard.
    if (willIdle && idleMs > 0) await condition(() => stopRequested, idleMs);
  }
}

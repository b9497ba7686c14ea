import { ApplicationFailure } from '@temporalio/activity';
import { FailureType } from '../failure-types';
import type { Checkpoint } from '../positions';
import type { ProcessOutcome, ShardRef } from '../consumer-types';
import type { RecordProcessor, RecordProcessorFactory, ShutdownInput } from '../record-processor';

/** A processor instance living on this worker, for one shard and one pinning. */
interface HostedProcessor {
  ref: ShardRef;
  /** Identifies the pinning (owner + pin count) that created the instance. */
  pin: string;
  /** The lease the pin's checkpoints go to (the load reporter writes there too); absent for a shutdown-only instance. */
  lease?: HostedLease;
  /** When the pin arrived on this worker (epoch ms). */
  since: number;
  /** Its factory and `initialize` have completed. */
  initialized?: boolean;
  /** The instance once its factory and `initialize` have completed. */
  ready: Promise<RecordProcessor>;
  /** Calls on one instance run one at a time, in order. */
  tail: Promise<unknown>;
  /** Outcome of the batches this instance completed recently, so a retried attempt does not deliver a batch twice. */
  completed: Map<string, unknown>;
  lastUsed: number;
  /** The newest lease counter a write under this pin reached (see pin-lease.ts). */
  leaseCounter?: number;
  /** Aborted when the pin ends here (shutdown, eviction, drain, or a stop of its window): in-flight waits end. */
  stop: AbortController;
  /** Created only to call `shutdown` (its worker was lost): not counted against `maxShards`. */
  transient?: boolean;
  /** Its `shutdown` has completed: it gets no second one (eviction after a shutdown only forgets it). A shutdown that
   * threw may be called again (a retried attempt). */
  shutDown?: boolean;
}

/** The lease table and owner of a hosted pin's shard. */
export interface HostedLease {
  tableName: string;
  owner: string;
}

/** A pin hosted on this worker, as {@link ProcessorHost.pins} lists it. */
export interface HostedPin {
  ref: ShardRef;
  pin: string;
  lease?: HostedLease;
  /** When the pin arrived on this worker (epoch ms). */
  since: number;
}

/** Why the host refuses a call; the activities turn these into typed failures. */
export type HostRefusal = 'NOT_REGISTERED' | 'LOST' | 'DRAINING' | 'FULL';

export class HostRefusedError extends Error {
  constructor(
    readonly refusal: HostRefusal,
    message: string,
  ) {
    super(message);
    this.name = 'HostRefusedError';
  }
}

/** Turns a host refusal into the failure the workflow acts on (move the shard, or stop with a clear message). */
export function refusalFailure(error: HostRefusedError): ApplicationFailure {
  const type = {
    NOT_REGISTERED: FailureType.ProcessorNotRegistered,
    DRAINING: FailureType.WorkerDraining,
    FULL: FailureType.WorkerFull,
    LOST: FailureType.ProcessorLost,
  }[error.refusal];
  // A moved shard is routine (BENIGN: logged at debug level); a missing processor is a configuration error.
  return ApplicationFailure.create({
    type,
    message: error.message,
    nonRetryable: true,
    ...(error.refusal === 'NOT_REGISTERED' ? {} : { category: 'BENIGN' as const }),
  });
}

/** The failure of a read or window a stopping worker refuses: the shard moves to another worker. */
export function drainingFailure(ref: ShardRef): ApplicationFailure {
  return refusalFailure(
    new HostRefusedError('DRAINING', `this worker is shutting down; shard ${ref.shardId} moves to another worker`),
  );
}

const RECENT_OUTCOMES = 4;

/** Rejects when the signal aborts (with its reason). */
function abandoned(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    const fail = () => reject(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason)));
    if (signal.aborted) fail();
    else signal.addEventListener('abort', fail, { once: true });
  });
}

function shardKey(ref: ShardRef): string {
  return JSON.stringify([ref.applicationName, ref.streamName, ref.shardId]);
}

/**
 * Holds the record processors of the shards pinned to this worker: creates them with the registered factories, runs
 * their calls one at a time per shard, and shuts them down. A shard's processor lives on one worker at a time, as in
 * KCL; when the shard moves, the workflow pins it again and a new instance is initialized where it lands.
 */
export interface ProcessorHostOptions {
  /**
   * The most shards this worker holds processors for: a new one beyond it is refused (`WorkerFull`) and placed
   * elsewhere, or waits for room. A shard already held here (a re-pin) does not count twice.
   * @default unlimited
   */
  maxShards?: number;
}

export class ProcessorHost {
  private readonly instances = new Map<string, HostedProcessor>();
  private draining = false;
  readonly maxShards: number | undefined;

  constructor(
    private readonly factories: Readonly<Record<string, RecordProcessorFactory>>,
    options: ProcessorHostOptions = {},
  ) {
    this.maxShards = options.maxShards;
  }

  /** Names of the registered processor factories. */
  get processorNames(): string[] {
    return Object.keys(this.factories);
  }

  get size(): number {
    return this.instances.size;
  }

  /** Shards whose processors count against `maxShards` (instances created only for a shutdown do not). */
  get holding(): number {
    let held = 0;
    for (const hosted of this.instances.values()) if (!hosted.transient) held++;
    return held;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /**
   * Creates and initializes the processor for a shard under a new pin. An instance of an older pin is shut down first
   * (ZOMBIE: it no longer owns the shard). Idempotent for the same pin (a retried attempt).
   */
  async initialize(input: {
    ref: ShardRef;
    processorName: string;
    pin: string;
    startingPosition: Checkpoint;
    /** The lease's pending checkpoint, told to `initialize`. */
    pendingCheckpoint?: Checkpoint;
    /** Only to call its `shutdown` (the shard's worker was lost): allowed beyond `maxShards`. */
    transient?: boolean;
    /** The shard's lease table and owner, kept for the load reporter (extra fields are ignored). */
    lease?: HostedLease;
  }): Promise<void> {
    const key = shardKey(input.ref);
    // After waiting for an older instance's shutdown, look again: a retried attempt of this same pin may have
    // registered its instance meanwhile (join it rather than create a second one, which nothing would shut down).
    for (;;) {
      this.refuseIfDraining(input.ref);
      const existing = this.instances.get(key);
      if (existing?.pin === input.pin) {
        await existing.ready;
        return;
      }
      if (!existing) break;
      await this.evict(key, existing);
    }
    const factory = this.factories[input.processorName];
    if (!factory) {
      throw new HostRefusedError(
        'NOT_REGISTERED',
        `no record processor named '${input.processorName}' is registered on this worker (registered: ${this.processorNames.join(', ') || 'none'})`,
      );
    }
    // Checked and reserved with no await in between, so concurrent initializations cannot overshoot the cap.
    if (!input.transient && this.maxShards !== undefined && this.holding >= this.maxShards) {
      throw new HostRefusedError(
        'FULL',
        `this worker holds ${this.holding} shards, its maximum (maxShardsPerWorker / --max-shards ${this.maxShards}); shard ${input.ref.shardId} goes to another worker or waits for one`,
      );
    }
    const ready = (async () => {
      const processor = await factory({ ...input.ref });
      if (!processor || typeof processor.processRecords !== 'function') {
        throw new TypeError(
          `the processor factory '${input.processorName}' returned ${processor === null ? 'null' : typeof processor}, not an object with a processRecords method`,
        );
      }
      await processor.initialize?.({
        shardId: input.ref.shardId,
        streamName: input.ref.streamName,
        startingPosition: input.startingPosition,
        ...(input.pendingCheckpoint !== undefined ? { pendingCheckpoint: input.pendingCheckpoint } : {}),
      });
      return processor;
    })();
    // Registered before it is ready, so a concurrent retry of this initialization waits for it instead of starting another.
    const hosted: HostedProcessor = {
      ref: input.ref,
      pin: input.pin,
      ...(input.lease ? { lease: { tableName: input.lease.tableName, owner: input.lease.owner } } : {}),
      since: Date.now(),
      ready,
      tail: ready,
      completed: new Map(),
      lastUsed: Date.now(),
      stop: new AbortController(),
      ...(input.transient ? { transient: true } : {}),
    };
    this.instances.set(key, hosted);
    try {
      await ready;
      hosted.initialized = true;
    } catch (error) {
      if (this.instances.get(key) === hosted) this.instances.delete(key);
      throw error;
    }
  }

  /**
   * Runs `fn` with the shard's processor, after any call already running on it. A batch already completed under the
   * same handle returns its recorded outcome instead of being delivered again.
   */
  async process<T = ProcessOutcome>(
    ref: ShardRef,
    pin: string,
    handle: string,
    fn: (processor: RecordProcessor) => Promise<T>,
    abandon?: AbortSignal,
  ): Promise<T> {
    this.refuseIfDraining(ref);
    const hosted = this.lookup(ref, pin);
    return this.serialize(
      hosted,
      async () => {
        if (hosted.completed.has(handle)) return hosted.completed.get(handle) as T;
        const outcome = await fn(await hosted.ready);
        hosted.completed.set(handle, outcome);
        if (hosted.completed.size > RECENT_OUTCOMES) {
          const oldest = hosted.completed.keys().next().value;
          if (oldest !== undefined) hosted.completed.delete(oldest);
        }
        return outcome;
      },
      abandon,
    );
  }

  /** The pins hosted here whose processor is initialized, with their lease (read-only copies). */
  pins(): HostedPin[] {
    return [...this.instances.values()]
      .filter((hosted) => hosted.initialized)
      .map(({ ref, pin, lease, since }) => ({ ref, pin, since, ...(lease ? { lease: { ...lease } } : {}) }));
  }

  /** The newest lease counter known for the pin on this worker. */
  leaseCounter(ref: ShardRef, pin: string): number | undefined {
    const hosted = this.instances.get(shardKey(ref));
    return hosted?.pin === pin ? hosted.leaseCounter : undefined;
  }

  setLeaseCounter(ref: ShardRef, pin: string, counter: number): void {
    const hosted = this.instances.get(shardKey(ref));
    if (hosted?.pin === pin) hosted.leaseCounter = Math.max(hosted.leaseCounter ?? 0, counter);
  }

  /**
   * A signal that aborts when the pin's work here should end: its window was asked to stop, or the processor is being
   * shut down or evicted. An already aborted signal when this worker does not hold the pin.
   */
  stopSignal(ref: ShardRef, pin: string): AbortSignal {
    const hosted = this.instances.get(shardKey(ref));
    return hosted?.pin === pin ? hosted.stop.signal : AbortSignal.abort();
  }

  /**
   * Ends the pin's in-flight window or wait (it reports where it stopped), and any it would start later: the consumer
   * is stopping. True if this worker holds the pin.
   */
  requestStop(ref: ShardRef, pin: string): boolean {
    const hosted = this.instances.get(shardKey(ref));
    if (hosted?.pin !== pin) return false;
    hosted.stop.abort();
    return true;
  }

  /**
   * Calls the processor's shutdown and forgets the instance, unless a newer pin's instance has taken its place meanwhile
   * (the same identity check eviction makes).
   */
  async shutdown(ref: ShardRef, pin: string, input: ShutdownInput): Promise<void> {
    const hosted = this.lookup(ref, pin);
    hosted.stop.abort();
    await this.serialize(hosted, async () => {
      const processor = await hosted.ready;
      if (hosted.shutDown) return;
      await processor.shutdown?.(input);
      hosted.shutDown = true;
    });
    this.forget(shardKey(ref), hosted);
  }

  /** True if this worker holds the shard's processor under this pin. */
  holds(ref: ShardRef, pin: string): boolean {
    return this.instances.get(shardKey(ref))?.pin === pin;
  }

  /**
   * Starts a graceful stop: new shards, reads, batches and windows are refused (DRAINING), and every pin's waits and
   * windows end at once, so each shard's consumer hands its shard over (its `shutdown(REQUESTED)` still runs here,
   * with a working checkpointer). `size` falls to 0 as they do.
   */
  beginDrain(): void {
    this.draining = true;
    for (const hosted of this.instances.values()) hosted.stop.abort();
  }

  /**
   * Stops taking work (calls are refused with DRAINING, so their shards move to other workers) and shuts every
   * processor down as ZOMBIE once its running call ends. Errors of individual shutdowns are reported, not thrown.
   */
  async drain(onError: (ref: ShardRef, error: unknown) => void = () => undefined): Promise<void> {
    this.draining = true;
    await Promise.all(
      [...this.instances.entries()].map(async ([key, hosted]) =>
        this.evict(key, hosted).catch((error: unknown) => onError(hosted.ref, error)),
      ),
    );
  }

  /**
   * Shuts down (ZOMBIE) processors unused for longer than `idleMs` whose shard is no longer pinned here. Idleness alone
   * proves nothing (a quiet shard makes no processor calls), so `stillPinned` is asked first: true keeps the instance
   * for another `idleMs`, false evicts it; if it throws, the instance is kept and asked about at the next sweep. Without
   * `stillPinned`, every idle instance is evicted.
   *
   * @returns how many instances were evicted.
   */
  async evictIdle(idleMs: number, stillPinned?: (ref: ShardRef, pin: string) => Promise<boolean>): Promise<number> {
    const cutoff = Date.now() - idleMs;
    const idle = [...this.instances.entries()].filter(([, hosted]) => hosted.lastUsed < cutoff);
    let evicted = 0;
    await Promise.all(
      idle.map(async ([key, hosted]) => {
        if (stillPinned) {
          const pinned = await stillPinned(hosted.ref, hosted.pin).catch(() => true);
          if (pinned) {
            hosted.lastUsed = Math.max(hosted.lastUsed, Date.now());
            return;
          }
        }
        // Used or replaced while we asked: not idle any more.
        if (this.instances.get(key) !== hosted || hosted.lastUsed >= cutoff) return;
        evicted++;
        await this.evict(key, hosted).catch(() => undefined);
      }),
    );
    return evicted;
  }

  private async evict(key: string, hosted: HostedProcessor): Promise<void> {
    this.forget(key, hosted);
    hosted.stop.abort();
    await this.serialize(hosted, async () => {
      const processor = await hosted.ready.catch(() => undefined);
      if (!processor || hosted.shutDown) return;
      await processor.shutdown?.({ reason: 'ZOMBIE' });
      hosted.shutDown = true;
    });
  }

  /** Removes the instance under `key` only if it is still this one (a newer pin's instance stays). */
  private forget(key: string, hosted: HostedProcessor): void {
    if (this.instances.get(key) === hosted) this.instances.delete(key);
  }

  private lookup(ref: ShardRef, pin: string): HostedProcessor {
    const hosted = this.instances.get(shardKey(ref));
    if (!hosted || hosted.pin !== pin) {
      throw new HostRefusedError(
        'LOST',
        `this worker does not hold the processor of shard ${ref.shardId} (pin ${pin})`,
      );
    }
    return hosted;
  }

  private refuseIfDraining(ref: ShardRef): void {
    if (this.draining) {
      throw new HostRefusedError(
        'DRAINING',
        `this worker is shutting down; shard ${ref.shardId} moves to another worker`,
      );
    }
  }

  /**
   * Runs `fn` after the instance's running call. With `abandon`: once it aborts (the call ran out of time, or its
   * activity was cancelled), the call is given up — it rejects with the signal's reason and the next call no longer
   * waits for it — though a processor that never returns keeps running in the background; nothing can stop it.
   */
  private serialize<T>(hosted: HostedProcessor, fn: () => Promise<T>, abandon?: AbortSignal): Promise<T> {
    const run = hosted.tail.then(fn, fn);
    const given = abandon ? Promise.race([run, abandoned(abandon)]) : run;
    hosted.tail = given.catch(() => undefined);
    hosted.lastUsed = Date.now();
    return given.finally(() => {
      hosted.lastUsed = Date.now();
    });
  }
}

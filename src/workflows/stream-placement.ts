/**
 * The stream consumer as coordinator (design §3): a background loop watches the fleet (`watchFleet`, one long activity
 * on the shared queue that returns when the live workers or a shard's worker change), runs the pure planner
 * (src/placement.ts) on each view and sends each planned move to the shard's consumer as a `moveShard` signal. Its state
 * is plain JSON carried in the stream consumer's cursor across continue-as-new.
 *
 * Deterministic workflow code: `now` is workflow time; the views come from activity results in history.
 */
import {
  CancellationScope,
  getExternalWorkflowHandle,
  isCancellation,
  log,
  patched,
  sleep,
} from '@temporalio/workflow';
import { DEFAULT_FLEET_WATCH_MAX_WAIT_MS, type FleetView, type PlannedMove } from '../fleet-types';
import {
  emptyPlacementState,
  type FleetSummary,
  maxMovesPerRound,
  nextUnplacedDeadline,
  planPlacement,
  type PlacementOptions,
  type PlacementState,
  recordMoves,
  summarizeFleet,
  markLeaving,
  updatePlacementState,
  type WorkerSummary,
} from '../placement';
import { moveShardSignal } from './shard-consumer';
import { fleetActivities } from './stream-activities';

/** What the coordinator needs of the stream consumer. */
export interface PlacementHost {
  /** The shared task queue (the stream consumer's own). */
  taskQueue: string;
  tableName: string;
  /** The multi-stream identifier, once the stream consumer knows it. */
  streamIdentifier(): string | undefined;
  workflowIdOf(shardId: string): string;
  /** Shards whose consumers run, with when each (re)started (workflow time, epoch ms). */
  activeShards(): { shardIds: string[]; startedAt: Record<string, number> };
  /** While stopping, nothing is moved. */
  stopping(): boolean;
  /** Called after each view: the stream consumer refreshes its details. */
  changed(): void;
  options?: PlacementOptions;
  /** @default DEFAULT_FLEET_WATCH_MAX_WAIT_MS (120 s) */
  maxWaitMs?: number;
}

/** What the progress query shows of placement. */
export interface PlacementProgress {
  workers: WorkerSummary[];
  waitingForCapacity: number;
  /** When the last fleet view was taken (ISO-8601). */
  viewAt: string;
  movesSent: number;
  movesInFlight: number;
}

/**
 * After a round that planned as many moves as a round may, the next watch returns after this long even if nothing
 * changed, so the next moves follow within seconds (the ones in flight count at their targets) instead of waiting for
 * the lease scan to show the first ones landed. One extra activity per such round, only while rebalancing.
 */
export const FOLLOW_UP_WAIT_MS = 2_000;

/** Longest pause between failed watches (they are retried by the activity's own policy first). */
const MAX_WATCH_BACKOFF_MS = 60_000;

const fmt = (n: number) => (n >= 100 || Number.isInteger(n) ? n.toFixed(0) : n.toFixed(1));

export class Placement {
  state: PlacementState;
  private view?: FleetView;
  private summary?: FleetSummary;
  private scope?: CancellationScope;
  /** The running watch call, and whether it is being restarted. */
  private call?: CancellationScope;
  private restarting = false;
  /** Workers shards failed over from (each restarts the watch once). */
  private readonly lost = new Set<string>();
  private loop?: Promise<void>;
  private enabled = false;
  /** The last round planned the most moves a round may: more may be due. */
  private followUp = false;
  /** When a shard with no worker may need a round although the view does not change (epoch ms, workflow time). */
  private unplacedDeadline: number | undefined;
  /** Shards with no worker first (`PlacementOptions.unplacedFirst`); decided once per run, for replay. */
  private unplacedFirst: boolean | undefined;
  private readonly maxWaitMs: number;
  private readonly activities: ReturnType<typeof fleetActivities>;

  constructor(
    private readonly host: PlacementHost,
    state?: PlacementState,
  ) {
    this.state = state ?? emptyPlacementState();
    this.maxWaitMs = host.maxWaitMs ?? DEFAULT_FLEET_WATCH_MAX_WAIT_MS;
    this.activities = fleetActivities(this.maxWaitMs);
  }

  /** A worker is stopping (one of its shards was handed over for that): it gets nothing new from now on. */
  workerLeaving(workerQueue: string): void {
    const next = markLeaving(this.state, workerQueue, Date.now());
    if (next === this.state) return;
    log.info('placement: worker leaving', { worker: workerQueue });
    this.state = next;
    this.restartWatch();
  }

  /**
   * A shard failed over from a worker that stopped answering (maybe dead, maybe slow: not marked). The watch starts
   * again, in case it ran there.
   */
  workerLost(workerQueue: string): void {
    if (this.lost.has(workerQueue)) return;
    this.lost.add(workerQueue);
    log.info('placement: a shard failed over from a worker', { worker: workerQueue });
    this.restartWatch();
  }

  private restartWatch(): void {
    if (!this.call || this.restarting) return;
    this.restarting = true;
    this.call.cancel();
  }

  /** Starts the watch loop (again after `stop`); the first watch returns the current view at once. */
  start(): void {
    this.enabled = true;
    if (this.loop) return;
    const scope = new CancellationScope();
    this.scope = scope;
    this.loop = scope
      .run(() => this.watch())
      .catch((error: unknown) => {
        if (!isCancellation(error)) throw error;
      });
  }

  /** Starts the loop again if it ran before `stop` (a continue-as-new that did not happen). */
  resume(): void {
    if (this.enabled) this.start();
  }

  /**
   * Cancels the watch and waits for the loop to end: before continue-as-new and before stopping the shards (a round of
   * signals under way is finished first). `allHandlersFinished` does not cover activities.
   */
  async stop(): Promise<void> {
    if (!this.scope || !this.loop) return;
    this.scope.cancel();
    await this.loop;
    this.scope = undefined;
    this.loop = undefined;
  }

  private async watch(): Promise<void> {
    let failures = 0;
    for (;;) {
      const streamIdentifier = this.host.streamIdentifier();
      let view: FleetView;
      // Each watch in a scope of its own: a worker reported lost or leaving restarts it at once (it may have run on that
      // worker; its sparse heartbeats would take up to a minute and a half to tell).
      const call = new CancellationScope({ cancellable: true });
      this.call = call;
      try {
        view = await call.run(() =>
          this.activities.watchFleet({
            taskQueue: this.host.taskQueue,
            tableName: this.host.tableName,
            ...(streamIdentifier ? { streamIdentifier } : {}),
            ...(this.view ? { known: this.view } : {}),
            maxWaitMs: this.nextWaitMs(),
          }),
        );
        failures = 0;
      } catch (error) {
        if (isCancellation(error) && this.restarting && !this.scope?.consideredCancelled) {
          this.restarting = false;
          continue;
        }
        if (isCancellation(error)) throw error;
        failures++;
        log.warn('placement: watching the fleet failed; trying again', { error: String(error), failures });
        await sleep(Math.min(MAX_WATCH_BACKOFF_MS, 1_000 * 2 ** failures));
        continue;
      }
      // A round, once planned, is sent whole: a stop or continue-as-new waits for its signals.
      await CancellationScope.nonCancellable(() => this.onView(view));
    }
  }

  /**
   * How long the next watch may wait for a change: briefly after a full round, until the next deadline of a shard with
   * no worker (its grace, or its move's landing), else the most.
   */
  private nextWaitMs(): number {
    if (!this.view) return this.maxWaitMs;
    if (this.followUp) return Math.min(FOLLOW_UP_WAIT_MS, this.maxWaitMs);
    if (this.unplacedDeadline === undefined) return this.maxWaitMs;
    return Math.min(this.maxWaitMs, Math.max(FOLLOW_UP_WAIT_MS, this.unplacedDeadline - Date.now()));
  }

  /** One round: update the state from the view, plan, send the moves, refresh the details. */
  private async onView(view: FleetView): Promise<void> {
    const now = Date.now();
    // (`patched`: runs recorded before it replay with the rule they ran.)
    this.unplacedFirst ??= patched('placement-unplaced-first');
    const options = { ...this.host.options, unplacedFirst: this.unplacedFirst };
    const { shardIds, startedAt } = this.host.activeShards();
    const before = this.state;
    const updated = updatePlacementState(before, view, options, now, shardIds);
    this.logStateChanges(before, updated, view);
    const moves = this.host.stopping() ? [] : planPlacement(view, updated, options, now, shardIds, startedAt);
    const { state, sent } = recordMoves(updated, moves, now);
    this.followUp = moves.length > 0 && moves.length >= maxMovesPerRound(shardIds.length, options);
    this.unplacedDeadline = nextUnplacedDeadline(view, state, options, now, shardIds, startedAt);
    this.state = state;
    this.view = view;
    this.summary = summarizeFleet(view, state, options, now, shardIds);
    const loadWeighted = this.summary.loadWeighted;
    for (const move of sent) {
      log.info('placement', {
        shardId: move.shardId,
        from: move.from,
        to: move.to,
        reason: move.reason,
        rule: move.rule,
        detail: move.detail,
        weight: move.weight,
        loadWeighted,
        seq: move.seq,
      });
    }
    await Promise.all(sent.map((move) => this.send(move)));
    this.host.changed();
  }

  private async send(move: PlannedMove & { seq: number }): Promise<void> {
    try {
      await getExternalWorkflowHandle(this.host.workflowIdOf(move.shardId)).signal(moveShardSignal, {
        to: move.to,
        reason: move.reason,
        seq: move.seq,
      });
    } catch (error) {
      // Its consumer is not running (it ended, or is between restarts): nothing is in flight.
      const inFlight = { ...this.state.inFlight };
      delete inFlight[move.shardId];
      this.state = { ...this.state, inFlight };
      log.warn('placement: moveShard signal not delivered', { shardId: move.shardId, error: String(error) });
    }
  }

  private logStateChanges(before: PlacementState, after: PlacementState, view: FleetView): void {
    for (const [queue, worker] of Object.entries(after.workers)) {
      if (worker.suspectSince !== undefined && before.workers[queue]?.suspectSince === undefined) {
        log.info('placement: worker suspect (a move to it landed elsewhere or never)', { worker: queue });
      }
    }
    for (const [queue, worker] of Object.entries(before.workers)) {
      if (worker.suspectSince !== undefined && after.workers[queue]?.suspectSince === undefined) {
        const live = view.workers.some((w) => w.workerQueue === queue);
        log.info(live ? 'placement: worker polled again; no longer suspect' : 'placement: suspect worker gone', {
          worker: queue,
        });
      }
    }
  }

  /** For the progress query; undefined before the first view. */
  progress(): PlacementProgress | undefined {
    if (!this.summary || !this.view) return undefined;
    return {
      workers: this.summary.workers,
      waitingForCapacity: this.summary.waitingForCapacity,
      viewAt: new Date(this.view.at).toISOString(),
      movesSent: this.state.seq,
      movesInFlight: Object.keys(this.state.inFlight).length,
    };
  }

  /** The progress query's placement fields (none before the first view, or when placement is off). */
  progressFields(): { workers?: WorkerSummary[]; waitingForCapacity?: number } {
    const progress = this.progress();
    return progress ? { workers: progress.workers, waitingForCapacity: progress.waitingForCapacity } : {};
  }

  /** What the cursor carries across continue-as-new (nothing when placement never ran). */
  carried(): { placement?: PlacementState } {
    return this.enabled ? { placement: this.state } : {};
  }

  /** Markdown lines for the stream consumer's current details: a per-worker table and the waiting shards. */
  details(): string[] {
    if (!this.enabled) return [];
    const summary = this.summary;
    if (!summary || !this.view) return ['- placement: waiting for the first fleet view'];
    const rows = summary.workers.map(
      (w) =>
        `| \`${w.worker}\` | ${w.suspect ? 'suspect' : w.live ? 'yes' : 'no'} | ${w.shards} | ${w.maxShards ?? '—'} | ${fmt(w.recordsPerSec)} | ${fmt(w.kbps)} |`,
    );
    return [
      `- placement: ${summary.workers.filter((w) => w.live && !w.suspect).length} workers eligible, ${summary.loadWeighted ? 'load-weighted (KB/s)' : 'by count'}; fleet view of ${new Date(this.view.at).toISOString()}; ${this.state.seq} moves sent, ${Object.keys(this.state.inFlight).length} in flight`,
      `- ${summary.waitingForCapacity} shards waiting for capacity${summary.capacity !== undefined ? ` (fleet holds ${summary.capacity})` : ''}`,
      '',
      '| worker | live | shards | max | records/s | KB/s |',
      '| --- | --- | ---: | ---: | ---: | ---: |',
      ...(rows.length > 0 ? rows : ['| none | | | | | |']),
    ];
  }
}

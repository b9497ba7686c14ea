/**
 * Placement: which worker each of a stream's shards should run on (design: docs/design/scale-out.md §2 liveness, §3).
 * The stream consumer (the coordinator) runs `planPlacement` on every fleet view and sends each planned move to the
 * shard's consumer as a `moveShard` signal.
 *
 * Pure and deterministic (no Node, no AWS SDK, no clock: `now` is passed in; inputs are sorted before use), so the
 * workflow and the tests run the same code. `PlacementState` is plain JSON carried across continue-as-new.
 *
 * The rule, for the S active shards of the stream:
 * 1. Eligible workers E: polled the shared queue within `livenessMs` and not suspect. A worker's cap is its
 *    `maxShards` (from the view, else remembered in the state), else unlimited.
 * 2. Count targets by water-filling S over E with the caps: level λ, the smallest with Σ min(cap_w, λ) ≥ S;
 *    target t_w = min(cap_w, ⌈λ⌉) and hard bound b_w = min(cap_w, ⌈λ⌉ + 1) (⌈S/N⌉ + 1 when no cap binds).
 * 3. Weights: a shard's KB/s when at least 80 % of the active shards report one younger than 2 min and the fleet total
 *    exceeds 64 KB/s (unknown values take the mean of the known ones); otherwise every shard weighs 1 (count-only).
 * 4. Moves, at most max(1, ⌈S/8⌉) per round, shards with a move in flight never moved:
 *    (a) shards with no live worker (not placed, or on a gone or stale worker), heaviest first, to the least-loaded
 *        eligible worker below its bound (a shard on a live but suspect worker stays: it is served there; a suspect
 *        only gets nothing new, since a false suspicion must not cost a worker all its shards);
 *    (b) count violations: from the worker most over its bound, the shard whose move best lowers max(L_from, L_to), to
 *        the least-loaded worker below its target;
 *    (c) load: while the heaviest worker carries more than 1.2 × the mean, move one of its shards (not moved within the
 *        cooldown) to the lightest worker with room under its bound, if that lowers max(L_from, L_to) by at least 10 %
 *        of the mean. When load-weighted and no such move exists (one indivisible hot shard), its lighter shards go to
 *        workers with room as long as the receiver stays lighter: the hot shard ends up on a worker with fewer shards.
 */
import type { MoveReason } from './consumer-types';
import type { FleetView, FleetWorker, PlannedMove } from './fleet-types';

/** A worker counts as live while its last poll of the shared queue is at most this old (a long poll lasts ≤ 60 s). */
export const DEFAULT_LIVENESS_MS = 70_000;
/** A move to a placed shard that has not landed after this long is given up (and its target made suspect). */
export const DEFAULT_IN_FLIGHT_TIMEOUT_MS = 60_000;
/** A shard moved this recently is not moved again for load balance (count and capacity moves ignore it). */
export const DEFAULT_MOVE_COOLDOWN_MS = 60_000;
/** Below this fleet total (KB/s), shards are balanced by count only. */
export const DEFAULT_MIN_BALANCED_LOAD_KBPS = 64;
/** Share of the active shards that must report a recent load for load-weighted placement. */
export const DEFAULT_LOAD_COVERAGE = 0.8;
/** A load report older than this does not count (workers report every 30 s). */
export const DEFAULT_LOAD_MAX_AGE_MS = 120_000;
/** Load balance acts only while the heaviest worker carries more than this multiple of the mean. */
export const DEFAULT_IMBALANCE_TOLERANCE = 1.2;
/** A load-balance move must lower max(L_from, L_to) by at least this share of the mean. */
export const DEFAULT_MIN_GAIN_OF_MEAN = 0.1;
/** Moves per round: max(1, ⌈S / this⌉). */
export const DEFAULT_SHARDS_PER_MOVE = 8;
/** A shard started this recently and not yet placed is left to place itself (through the shared queue). */
export const DEFAULT_UNPLACED_GRACE_MS = 10_000;
/**
 * A move sent to a shard with no worker lands within a second or two (one initialize on the target). When a view taken
 * this long after the move still shows the shard nowhere, the target refused it (it filled up meanwhile): the move is
 * given up and the shard planned again.
 */
export const DEFAULT_UNPLACED_LAND_MS = 10_000;

export interface PlacementOptions {
  /** @default 70000 */
  livenessMs?: number;
  /** @default 60000 */
  inFlightTimeoutMs?: number;
  /** @default 60000 */
  moveCooldownMs?: number;
  /** @default 64 */
  minBalancedLoadKBps?: number;
  /** @default 0.8 */
  loadCoverage?: number;
  /** @default 120000 */
  loadMaxAgeMs?: number;
  /** @default 1.2 */
  imbalanceTolerance?: number;
  /** @default 0.1 */
  minGainOfMean?: number;
  /** @default max(1, ceil(S / 8)) */
  maxMovesPerRound?: number;
  /** @default 10000 */
  unplacedGraceMs?: number;
  /** @default 10000 */
  unplacedLandMs?: number;
  /**
   * Shards with no worker come first: all of them are placed in one round (not limited by `maxMovesPerRound`), a move
   * to one that has not landed within `unplacedLandMs` is planned again, and no shard is moved for load while one still
   * places itself. False only where runs recorded before this behaviour replay.
   * @default true
   */
  unplacedFirst?: boolean;
}

/** What the coordinator remembers of a worker between views. */
export interface WorkerPlacementState {
  /** Set when a move sent to it resolved elsewhere; cleared when it polls again after this (epoch ms). */
  suspectSince?: number;
  /** Its cap, as last seen in a view. */
  maxShards?: number;
}

/** A move sent and not yet seen to land. */
export interface InFlightMove {
  to: string;
  /** When it was sent (epoch ms, workflow time). */
  at: number;
  /** Where the shard was when it was sent; absent when it was not placed. */
  from?: string;
}

/** The coordinator's placement memory: plain JSON, carried across continue-as-new. */
export interface PlacementState {
  /** By worker queue; only workers in the last view that have something to remember. */
  workers: Record<string, WorkerPlacementState>;
  /** By shard id. */
  inFlight: Record<string, InFlightMove>;
  /** When each shard was last moved (epoch ms), kept for the cooldown. */
  movedAt: Record<string, number>;
  /** The `seq` of the last `moveShard` signal sent. */
  seq: number;
}

/** Which step of the rule decided a move. */
export type PlacementRule = 'UNPLACED' | 'BOUND' | 'LOAD';

/** A planned move with the rule that decided it and a line for the log. */
export interface PlacementDecision extends PlannedMove {
  rule: PlacementRule;
  /** The shard's weight (KB/s when load-weighted, else 1). */
  weight: number;
  detail: string;
}

/** One worker as the coordinator shows it (workflow details, progress query, `temporal-kcl status`). */
export interface WorkerSummary {
  worker: string;
  identity: string;
  live: boolean;
  suspect: boolean;
  /** Active shards of this stream the view places on it. */
  shards: number;
  maxShards?: number;
  recordsPerSec: number;
  kbps: number;
}

/** The fleet as the coordinator shows it. */
export interface FleetSummary {
  workers: WorkerSummary[];
  /** Active shards beyond what the eligible workers' caps hold. */
  waitingForCapacity: number;
  /** Active shards on no eligible worker. */
  unplaced: number;
  /** Shards the eligible workers' caps hold; absent when one is unlimited. */
  capacity?: number;
  loadWeighted: boolean;
}

type ResolvedOptions = Required<Omit<PlacementOptions, 'maxMovesPerRound'>> & { maxMovesPerRound?: number };

export function resolvePlacementOptions(options: PlacementOptions = {}): ResolvedOptions {
  return {
    livenessMs: options.livenessMs ?? DEFAULT_LIVENESS_MS,
    inFlightTimeoutMs: options.inFlightTimeoutMs ?? DEFAULT_IN_FLIGHT_TIMEOUT_MS,
    moveCooldownMs: options.moveCooldownMs ?? DEFAULT_MOVE_COOLDOWN_MS,
    minBalancedLoadKBps: options.minBalancedLoadKBps ?? DEFAULT_MIN_BALANCED_LOAD_KBPS,
    loadCoverage: options.loadCoverage ?? DEFAULT_LOAD_COVERAGE,
    loadMaxAgeMs: options.loadMaxAgeMs ?? DEFAULT_LOAD_MAX_AGE_MS,
    imbalanceTolerance: options.imbalanceTolerance ?? DEFAULT_IMBALANCE_TOLERANCE,
    minGainOfMean: options.minGainOfMean ?? DEFAULT_MIN_GAIN_OF_MEAN,
    unplacedGraceMs: options.unplacedGraceMs ?? DEFAULT_UNPLACED_GRACE_MS,
    unplacedLandMs: options.unplacedLandMs ?? DEFAULT_UNPLACED_LAND_MS,
    unplacedFirst: options.unplacedFirst ?? true,
    ...(options.maxMovesPerRound !== undefined ? { maxMovesPerRound: options.maxMovesPerRound } : {}),
  };
}

/** Most moves one round plans for `activeShards` active shards: max(1, ceil(S / 8)) unless the options say. */
export function maxMovesPerRound(activeShards: number, options: PlacementOptions = {}): number {
  return options.maxMovesPerRound ?? Math.max(1, Math.ceil(activeShards / DEFAULT_SHARDS_PER_MOVE));
}

export function emptyPlacementState(): PlacementState {
  return { workers: {}, inFlight: {}, movedAt: {}, seq: 0 };
}

const byString = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
const sortedUnique = (ids: readonly string[]) => [...new Set(ids)].sort(byString);

/** The liveness rule: the worker polled the shared queue within `livenessMs` of `now` (the fleet watch and `status` use it too). */
export function isLive(
  worker: Pick<FleetWorker, 'lastAccessTime'>,
  now: number,
  livenessMs: number = DEFAULT_LIVENESS_MS,
): boolean {
  return now - worker.lastAccessTime <= livenessMs;
}

/** A worker's cap: from the view, else remembered; Infinity when it has none. */
function capOf(queue: string, view: FleetView, state: PlacementState): number {
  const fromView = view.workers.find((worker) => worker.workerQueue === queue)?.maxShards;
  return fromView ?? state.workers[queue]?.maxShards ?? Infinity;
}

/** Active shards per worker queue, as the view places them. */
function countsInView(view: FleetView, active: ReadonlySet<string>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const shard of view.shards) {
    if (shard.worker !== undefined && active.has(shard.shardId) && !shard.ended) {
      counts.set(shard.worker, (counts.get(shard.worker) ?? 0) + 1);
    }
  }
  return counts;
}

/** Where the view places each active shard (the first entry of a shard wins). */
function locations(view: FleetView, active: ReadonlySet<string>): Map<string, string | undefined> {
  const where = new Map<string, string | undefined>();
  for (const shard of view.shards) {
    if (active.has(shard.shardId) && !where.has(shard.shardId))
      where.set(shard.shardId, shard.ended ? undefined : shard.worker);
  }
  return where;
}

/**
 * The state after a new view: caps remembered, suspects cleared by a fresh poll, moves that landed or failed dropped
 * (a target whose move resolved elsewhere becomes suspect, unless the view shows it at its cap), old cooldowns
 * forgotten, and nothing kept for workers or shards the view and the active list no longer name.
 */
export function updatePlacementState(
  state: PlacementState,
  view: FleetView,
  options: PlacementOptions,
  now: number,
  activeShardIds: readonly string[],
): PlacementState {
  const o = resolvePlacementOptions(options);
  const active = new Set(activeShardIds);
  const workersInView = new Map(view.workers.map((worker) => [worker.workerQueue, worker]));
  const counts = countsInView(view, active);
  const where = locations(view, active);

  const workers: Record<string, WorkerPlacementState> = {};
  for (const queue of [...workersInView.keys()].sort(byString)) {
    const worker = workersInView.get(queue)!;
    const entry: WorkerPlacementState = { ...state.workers[queue] };
    if (worker.maxShards !== undefined) entry.maxShards = worker.maxShards;
    if (entry.suspectSince !== undefined && worker.lastAccessTime > entry.suspectSince) delete entry.suspectSince;
    if (entry.maxShards !== undefined || entry.suspectSince !== undefined) workers[queue] = entry;
  }
  const atCap = (queue: string) => (counts.get(queue) ?? 0) >= capOf(queue, view, { ...state, workers });
  const usable = (queue: string) => {
    const worker = workersInView.get(queue);
    return worker !== undefined && isLive(worker, now, o.livenessMs) && workers[queue]?.suspectSince === undefined;
  };
  const suspect = (queue: string) => {
    if (!workersInView.has(queue) || atCap(queue)) return;
    workers[queue] = { ...workers[queue], suspectSince: now };
  };

  const inFlight: Record<string, InFlightMove> = {};
  for (const shardId of Object.keys(state.inFlight).sort(byString)) {
    const move = state.inFlight[shardId]!;
    if (!active.has(shardId)) continue;
    const at = where.get(shardId);
    if (at === move.to) continue; // landed
    if (at === undefined) {
      // Not placed yet: the consumer keeps the target and uses it when it pins, unless the target cannot take it, or
      // (unplacedFirst) a view taken well after the move still shows the shard nowhere: the target refused it.
      const refused = o.unplacedFirst && view.at - move.at >= o.unplacedLandMs;
      if (usable(move.to) && !atCap(move.to) && !refused) inFlight[shardId] = move;
      continue;
    }
    if (at !== move.from || now - move.at >= o.inFlightTimeoutMs) {
      // Resolved elsewhere (it fell back to the shared queue), or never moved: the target did not take it.
      suspect(move.to);
      continue;
    }
    inFlight[shardId] = move;
  }

  const movedAt: Record<string, number> = {};
  for (const shardId of Object.keys(state.movedAt).sort(byString)) {
    const at = state.movedAt[shardId]!;
    if (active.has(shardId) && now - at < o.moveCooldownMs) movedAt[shardId] = at;
  }
  return { workers, inFlight, movedAt, seq: state.seq };
}

/** The state after the coordinator sent `moves` at `now`: each with the next `seq`, in flight and cooling down. */
export function recordMoves<M extends PlannedMove>(
  state: PlacementState,
  moves: readonly M[],
  now: number,
): { state: PlacementState; sent: (M & { seq: number })[] } {
  const next: PlacementState = {
    workers: state.workers,
    inFlight: { ...state.inFlight },
    movedAt: { ...state.movedAt },
    seq: state.seq,
  };
  const sent = moves.map((move) => {
    next.seq += 1;
    next.inFlight[move.shardId] = { to: move.to, at: now, ...(move.from !== undefined ? { from: move.from } : {}) };
    next.movedAt[move.shardId] = now;
    return { ...move, seq: next.seq };
  });
  return { state: next, sent };
}

/** Everything the rule derives from a view before it moves anything. */
interface Analysis {
  o: ResolvedOptions;
  active: string[];
  eligible: string[];
  cap: Map<string, number>;
  target: Map<string, number>;
  bound: Map<string, number>;
  loadWeighted: boolean;
  weight: Map<string, number>;
  /** Where the view places each active shard (eligible or not). */
  where: Map<string, string | undefined>;
  workers: Map<string, FleetWorker>;
  /** Worker queues that polled within `livenessMs` (suspect or not). */
  live: Set<string>;
  shardsById: Map<string, FleetView['shards'][number]>;
}

function analyze(
  view: FleetView,
  state: PlacementState,
  options: PlacementOptions,
  now: number,
  activeShardIds: readonly string[],
): Analysis {
  const o = resolvePlacementOptions(options);
  const active = sortedUnique(activeShardIds);
  const activeSet = new Set(active);
  const workers = new Map<string, FleetWorker>();
  for (const worker of [...view.workers].sort((a, b) => byString(a.workerQueue, b.workerQueue))) {
    if (!workers.has(worker.workerQueue)) workers.set(worker.workerQueue, worker);
  }
  const live = new Set(
    [...workers.values()].filter((worker) => isLive(worker, now, o.livenessMs)).map((worker) => worker.workerQueue),
  );
  const eligible = [...live].filter((queue) => state.workers[queue]?.suspectSince === undefined);
  const cap = new Map(eligible.map((queue) => [queue, capOf(queue, view, state)]));

  // Water-filling: workers whose cap is below the level take their cap; the rest share what remains.
  let level = Infinity;
  const totalCap = eligible.reduce((sum, queue) => sum + cap.get(queue)!, 0);
  if (eligible.length > 0 && totalCap > active.length) {
    let remaining = active.length;
    let sharing = eligible.length;
    for (const queue of [...eligible].sort((a, b) => cap.get(a)! - cap.get(b)! || byString(a, b))) {
      const c = cap.get(queue)!;
      if (c * sharing >= remaining) break;
      remaining -= c;
      sharing -= 1;
    }
    level = remaining / sharing;
  }
  const target = new Map(eligible.map((queue) => [queue, Math.min(cap.get(queue)!, Math.ceil(level))]));
  const bound = new Map(eligible.map((queue) => [queue, Math.min(cap.get(queue)!, Math.ceil(level) + 1)]));

  // Weights: KB/s when enough shards report a fresh value and there is enough load to matter.
  const shardsById = new Map<string, FleetView['shards'][number]>();
  for (const shard of view.shards)
    if (activeSet.has(shard.shardId) && !shardsById.has(shard.shardId)) shardsById.set(shard.shardId, shard);
  const known = new Map<string, number>();
  for (const shardId of active) {
    const shard = shardsById.get(shardId);
    if (
      shard?.kbps !== undefined &&
      Number.isFinite(shard.kbps) &&
      shard.kbps >= 0 &&
      shard.reportedAt !== undefined &&
      now - shard.reportedAt < o.loadMaxAgeMs
    ) {
      known.set(shardId, shard.kbps);
    }
  }
  const knownSum = [...known.values()].reduce((sum, kbps) => sum + kbps, 0);
  const knownMean = known.size > 0 ? knownSum / known.size : 0;
  const fleetTotal = knownSum + (active.length - known.size) * knownMean;
  const loadWeighted =
    active.length > 0 && known.size >= o.loadCoverage * active.length && fleetTotal > o.minBalancedLoadKBps;
  const weight = new Map(active.map((shardId) => [shardId, loadWeighted ? (known.get(shardId) ?? knownMean) : 1]));

  return {
    o,
    active,
    eligible,
    cap,
    target,
    bound,
    loadWeighted,
    weight,
    where: locations(view, activeSet),
    workers,
    live,
    shardsById,
  };
}

/** Count, load and shards of each eligible worker as moves are planned. */
class Simulation {
  readonly shards = new Map<string, Set<string>>();
  readonly load = new Map<string, number>();
  /** Eligible workers that held nothing of the stream when the round began (moves to them are JOINs). */
  readonly newcomers = new Set<string>();

  constructor(private readonly a: Analysis) {
    for (const queue of a.eligible) {
      this.shards.set(queue, new Set());
      this.load.set(queue, 0);
    }
  }

  place(shardId: string, queue: string): void {
    this.shards.get(queue)!.add(shardId);
    this.load.set(queue, this.load.get(queue)! + this.a.weight.get(shardId)!);
  }

  move(shardId: string, from: string | undefined, to: string): void {
    if (from !== undefined && this.shards.get(from)?.delete(shardId)) {
      this.load.set(from, this.load.get(from)! - this.a.weight.get(shardId)!);
    }
    this.place(shardId, to);
  }

  count(queue: string): number {
    return this.shards.get(queue)!.size;
  }

  /** Sorted by load, then count, then name (lightest first). */
  lightest(queues: readonly string[]): string | undefined {
    return [...queues].sort(
      (a, b) => this.load.get(a)! - this.load.get(b)! || this.count(a) - this.count(b) || byString(a, b),
    )[0];
  }
}

const fmt = (n: number) => (Number.isInteger(n) ? String(n) : n.toFixed(1));

/**
 * The moves of one round (design §3), in the order to send them. Call `updatePlacementState` with the same view first.
 * `startedAt` (epoch ms by shard id) marks shards whose consumer started recently: not placed yet, they are left to
 * place themselves for `unplacedGraceMs`.
 */
export function planPlacement(
  view: FleetView,
  state: PlacementState,
  options: PlacementOptions,
  now: number,
  activeShardIds: readonly string[],
  startedAt: Readonly<Record<string, number>> = {},
): PlacementDecision[] {
  const a = analyze(view, state, options, now, activeShardIds);
  const { o } = a;
  if (a.eligible.length === 0 || a.active.length === 0) return [];
  const maxMoves = maxMovesPerRound(a.active.length, o);
  const eligible = new Set(a.eligible);
  const sim = new Simulation(a);
  const locked = new Set<string>(); // in flight, or moved this round
  const pending: string[] = [];
  /** Not placed and still in their grace: they place themselves, filling the workers with room. */
  let settling = 0;

  for (const shardId of a.active) {
    const flight = state.inFlight[shardId];
    const at = a.where.get(shardId);
    if (flight) {
      locked.add(shardId);
      // Counted where it is going, so that no more is sent there than it has room for.
      if (eligible.has(flight.to)) sim.place(shardId, flight.to);
      else if (at !== undefined && eligible.has(at)) sim.place(shardId, at);
      continue;
    }
    if (at !== undefined && eligible.has(at)) sim.place(shardId, at);
    else if (at !== undefined && a.live.has(at))
      continue; // on a live suspect: served; it only gets nothing new
    else if (at !== undefined || now - (startedAt[shardId] ?? -Infinity) >= o.unplacedGraceMs) pending.push(shardId);
    else settling++;
  }
  for (const queue of a.eligible) if (sim.count(queue) === 0) sim.newcomers.add(queue);

  const moves: PlacementDecision[] = [];
  const decide = (shardId: string, from: string | undefined, to: string, rule: PlacementRule, detail: string) => {
    const reason: MoveReason = rule === 'UNPLACED' ? 'CAPACITY' : sim.newcomers.has(to) ? 'JOIN' : 'BALANCE';
    moves.push({
      shardId,
      ...(from !== undefined ? { from } : {}),
      to,
      reason,
      rule,
      weight: a.weight.get(shardId)!,
      detail,
    });
    sim.move(shardId, from !== undefined && eligible.has(from) ? from : undefined, to);
    locked.add(shardId);
  };
  const roomUnder = (limit: Map<string, number>, except?: string) =>
    a.eligible.filter((queue) => queue !== except && sim.count(queue) < limit.get(queue)!);

  // (a) Shards with no live worker, heaviest first, to the least-loaded worker below its bound: all of them in one round
  // with unplacedFirst (an unserved shard placed moves nothing), else within the round's limit.
  pending.sort((x, y) => a.weight.get(y)! - a.weight.get(x)! || byString(x, y));
  for (const shardId of pending) {
    if (moves.length >= maxMoves && !o.unplacedFirst) return moves;
    const to = sim.lightest(roomUnder(a.bound));
    if (to === undefined) break; // every eligible worker is at its bound or cap: the rest wait for capacity
    const from = a.where.get(shardId);
    decide(shardId, from, to, 'UNPLACED', from === undefined ? 'not placed' : `on ${from}, not live`);
  }

  // (b) Count violations: from the worker most over its bound, to the least-loaded worker below its target.
  const stuck = new Set<string>();
  while (moves.length < maxMoves) {
    const over = a.eligible
      .filter((queue) => !stuck.has(queue) && sim.count(queue) > a.bound.get(queue)!)
      .sort((x, y) => sim.count(y) - a.bound.get(y)! - (sim.count(x) - a.bound.get(x)!) || byString(x, y))[0];
    if (over === undefined) break;
    const to = sim.lightest(roomUnder(a.target, over));
    const movable = [...sim.shards.get(over)!].filter((shardId) => !locked.has(shardId));
    if (to === undefined || movable.length === 0) {
      stuck.add(over);
      continue;
    }
    const shardId = bestMove(sim, a, over, to, movable).shardId;
    decide(shardId, over, to, 'BOUND', `${over} holds ${sim.count(over)} > bound ${a.bound.get(over)}`);
  }

  // (c) Load balance within the bounds: the heaviest worker that can give, to the lightest with room.
  const coolingDown = (shardId: string) => now - (state.movedAt[shardId] ?? -Infinity) < o.moveCooldownMs;
  const loadMove = (): boolean => {
    const total = a.eligible.reduce((sum, queue) => sum + sim.load.get(queue)!, 0);
    const mean = total / a.eligible.length;
    if (mean <= 0) return false;
    const donors = a.eligible
      .filter((queue) => sim.load.get(queue)! > o.imbalanceTolerance * mean)
      .sort((x, y) => sim.load.get(y)! - sim.load.get(x)! || sim.count(y) - sim.count(x) || byString(x, y));
    for (const from of donors) {
      const to = sim.lightest(roomUnder(a.bound, from));
      const movable = [...sim.shards.get(from)!].filter((shardId) => !locked.has(shardId) && !coolingDown(shardId));
      if (to === undefined || movable.length === 0) continue;
      const fromLoad = sim.load.get(from)!;
      const toLoad = sim.load.get(to)!;
      const why = `${from} carries ${fmt(fromLoad)} > ${o.imbalanceTolerance} × mean ${fmt(mean)}`;
      const best = bestMove(sim, a, from, to, movable);
      if (fromLoad - best.peak >= o.minGainOfMean * mean) {
        decide(best.shardId, from, to, 'LOAD', `${why}; ${to} carries ${fmt(toLoad)}`);
        return true;
      }
      if (!a.loadWeighted) continue;
      // A hot shard no move can split: its worker gives its lighter shards to workers with room (which stay lighter).
      const hottest = [...sim.shards.get(from)!].sort(
        (x, y) => a.weight.get(y)! - a.weight.get(x)! || byString(x, y),
      )[0];
      const relief = movable
        .filter((shardId) => shardId !== hottest)
        .sort((x, y) => a.weight.get(x)! - a.weight.get(y)! || byString(x, y))[0];
      if (relief === undefined) continue;
      const w = a.weight.get(relief)!;
      if (toLoad + w >= fromLoad - w) continue;
      decide(relief, from, to, 'LOAD', `${why}, most of it hot shard ${hottest}: fewer shards beside it`);
      return true;
    }
    return false;
  };
  // No shard is moved for load while others still place themselves (unplacedFirst): they fill the workers with room.
  while (moves.length < maxMoves && a.eligible.length > 1 && !(o.unplacedFirst && settling > 0) && loadMove());
  return moves;
}

/**
 * When, after `now`, a new round could place something that this one could not, although the view may not change by
 * then (epoch ms, or undefined): the end of the grace of a shard that has not placed itself, or the land deadline of a
 * move to a shard with no worker. The coordinator's next watch returns by then (with `unplacedFirst`).
 */
export function nextUnplacedDeadline(
  view: FleetView,
  state: PlacementState,
  options: PlacementOptions,
  now: number,
  activeShardIds: readonly string[],
  startedAt: Readonly<Record<string, number>> = {},
): number | undefined {
  const o = resolvePlacementOptions(options);
  if (!o.unplacedFirst) return undefined;
  const active = new Set(activeShardIds);
  const where = locations(view, active);
  let next: number | undefined;
  const consider = (at: number) => {
    if (at > now && (next === undefined || at < next)) next = at;
  };
  for (const shardId of [...active].sort(byString)) {
    if (where.get(shardId) !== undefined) continue;
    const flight = state.inFlight[shardId];
    if (flight) consider(flight.at + o.unplacedLandMs);
    else if (startedAt[shardId] !== undefined) consider(startedAt[shardId] + o.unplacedGraceMs);
  }
  return next;
}

/** Of `candidates` on `from`, the one whose move to `to` leaves the lowest max(L_from, L_to) (lighter, then id). */
function bestMove(
  sim: Simulation,
  a: Analysis,
  from: string,
  to: string,
  candidates: readonly string[],
): { shardId: string; peak: number } {
  const fromLoad = sim.load.get(from)!;
  const toLoad = sim.load.get(to)!;
  const scored = candidates.map((shardId) => {
    const w = a.weight.get(shardId)!;
    return { shardId, w, peak: Math.max(fromLoad - w, toLoad + w) };
  });
  scored.sort((x, y) => x.peak - y.peak || x.w - y.w || byString(x.shardId, y.shardId));
  return scored[0]!;
}

/** The per-worker view the coordinator shows, and how many shards wait for capacity. */
export function summarizeFleet(
  view: FleetView,
  state: PlacementState,
  options: PlacementOptions,
  now: number,
  activeShardIds: readonly string[],
): FleetSummary {
  const a = analyze(view, state, options, now, activeShardIds);
  const activeSet = new Set(a.active);
  const perWorker = new Map<string, { shards: number; recordsPerSec: number; kbps: number }>();
  for (const [shardId, queue] of a.where) {
    if (queue === undefined) continue;
    const entry = perWorker.get(queue) ?? { shards: 0, recordsPerSec: 0, kbps: 0 };
    const shard = a.shardsById.get(shardId);
    entry.shards += 1;
    entry.recordsPerSec += shard?.recordsPerSec ?? 0;
    entry.kbps += shard?.kbps ?? 0;
    perWorker.set(queue, entry);
  }
  const eligible = new Set(a.eligible);
  const workers: WorkerSummary[] = [...a.workers.values()].map((worker) => {
    const entry = perWorker.get(worker.workerQueue) ?? { shards: 0, recordsPerSec: 0, kbps: 0 };
    const maxShards = worker.maxShards ?? state.workers[worker.workerQueue]?.maxShards;
    return {
      worker: worker.workerQueue,
      identity: worker.identity,
      live: isLive(worker, now, a.o.livenessMs),
      suspect: state.workers[worker.workerQueue]?.suspectSince !== undefined,
      shards: entry.shards,
      ...(maxShards !== undefined ? { maxShards } : {}),
      recordsPerSec: entry.recordsPerSec,
      kbps: entry.kbps,
    };
  });
  const capacity = a.eligible.reduce((sum, queue) => sum + a.cap.get(queue)!, 0);
  const unplaced = a.active.filter((shardId) => {
    const queue = a.where.get(shardId);
    return queue === undefined || !eligible.has(queue);
  }).length;
  return {
    workers,
    waitingForCapacity: Math.max(0, activeSet.size - capacity),
    unplaced,
    ...(Number.isFinite(capacity) ? { capacity } : {}),
    loadWeighted: a.loadWeighted,
  };
}

/**
 * A worker that said it is leaving (its shards were handed over because it is stopping): suspect from `now`, so it gets
 * nothing new; it is eligible again only if it polls afterwards (a restarted process under the same identity).
 */
export function markLeaving(state: PlacementState, workerQueue: string, now: number): PlacementState {
  const entry = state.workers[workerQueue];
  if (entry?.suspectSince !== undefined) return state;
  return { ...state, workers: { ...state.workers, [workerQueue]: { ...entry, suspectSince: now } } };
}

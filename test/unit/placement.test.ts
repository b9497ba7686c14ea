/**
 * The placement rule (src/placement.ts, design §2 liveness and §3), on hand-built fleet views: no server. `settle` plays
 * the coordinator's loop: update the state from the view, plan, let every planned move land, advance the clock.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { FleetShard, FleetView, FleetWorker } from '../../src/fleet-types';
import {
  DEFAULT_LIVENESS_MS,
  DEFAULT_MOVE_COOLDOWN_MS,
  DEFAULT_UNPLACED_LAND_MS,
  emptyPlacementState,
  markLeaving,
  nextUnplacedDeadline,
  planPlacement,
  type PlacementDecision,
  type PlacementOptions,
  type PlacementState,
  recordMoves,
  summarizeFleet,
  updatePlacementState,
} from '../../src/placement';

const T0 = 1_800_000_000_000;
const shardIdOf = (i: number) => `shardId-${String(i).padStart(12, '0')}`;
const queueOf = (name: string) => `temporal-kcl@${name}`;

function worker(name: string, extra: Partial<FleetWorker> = {}): FleetWorker {
  return { workerQueue: queueOf(name), identity: name, lastAccessTime: T0, ...extra };
}

/** A view whose shards are placed as `placement` says (worker name per shard index; undefined: not placed). */
function fleet(
  workers: FleetWorker[],
  placement: (string | undefined)[],
  shards: Partial<FleetShard>[] = [],
): FleetView {
  return {
    at: T0,
    workers,
    shards: placement.map((name, i) => ({
      shardId: shardIdOf(i),
      ...(name !== undefined ? { worker: queueOf(name) } : {}),
      ended: false,
      ...shards[i],
    })),
  };
}

const allShards = (view: FleetView) => view.shards.map((shard) => shard.shardId);

/** Active shards per worker name (0 for live workers holding none). */
function counts(view: FleetView): Record<string, number> {
  const result: Record<string, number> = {};
  for (const w of view.workers) result[w.identity] = 0;
  for (const shard of view.shards) {
    if (shard.worker !== undefined) {
      const name = shard.worker.replace('temporal-kcl@', '');
      result[name] = (result[name] ?? 0) + 1;
    }
  }
  return result;
}

interface Settled {
  view: FleetView;
  state: PlacementState;
  now: number;
  rounds: PlacementDecision[][];
}

/**
 * Rounds of the coordinator until a round plans nothing: each planned move lands before the next view (the view is
 * taken `stepMs` later; workers keep polling, loads keep being reported).
 */
function settle(
  view: FleetView,
  options: PlacementOptions = {},
  start: { state?: PlacementState; now?: number } = {},
  stepMs = 10_000,
): Settled {
  let state = start.state ?? emptyPlacementState();
  let now = start.now ?? T0;
  let current = view;
  const rounds: PlacementDecision[][] = [];
  for (let round = 0; round < 100; round++) {
    current = {
      ...current,
      at: now,
      workers: current.workers.map((w) => ({ ...w, lastAccessTime: now })),
      shards: current.shards.map((s) => (s.reportedAt !== undefined ? { ...s, reportedAt: now } : s)),
    };
    state = updatePlacementState(state, current, options, now, allShards(current));
    const moves = planPlacement(current, state, options, now, allShards(current));
    if (moves.length === 0) return { view: current, state, now, rounds };
    rounds.push(moves);
    state = recordMoves(state, moves, now).state;
    const to = new Map(moves.map((move) => [move.shardId, move.to]));
    current = {
      ...current,
      shards: current.shards.map((s) => (to.has(s.shardId) ? { ...s, worker: to.get(s.shardId)! } : s)),
    };
    now += stepMs;
  }
  throw new Error('placement did not settle in 100 rounds');
}

function plan(view: FleetView, state = emptyPlacementState(), options: PlacementOptions = {}, now = T0) {
  return planPlacement(view, state, options, now, allShards(view));
}

describe('placement: the count bound', () => {
  test('16 shards: 2 workers, then 4 join, then one leaves: every worker within ceil(16/N) + 1 each time', () => {
    // Prepare: two workers holding 8 each.
    const start = fleet(
      [worker('a'), worker('b')],
      Array.from({ length: 16 }, (_, i) => (i < 8 ? 'a' : 'b')),
    );
    assert.deepEqual(plan(start), [], 'balanced at 2 workers');

    // Act: two more join.
    const joined = settle({ ...start, workers: [...start.workers, worker('c'), worker('d')] });

    // Assess: at most max(1, ceil(16/8)) = 2 moves a round, the first ones to the newcomers (JOIN), and the bound
    // (4 + 1) reached, then counts even (count-only: no loads reported).
    assert.ok(joined.rounds.every((round) => round.length <= 2));
    assert.deepEqual(
      joined.rounds[0]!.map((move) => move.reason),
      ['JOIN', 'JOIN'],
    );
    assert.ok(joined.rounds[0]!.every((move) => move.rule === 'BOUND'));
    assert.deepEqual(counts(joined.view), { a: 4, b: 4, c: 4, d: 4 });
    const movedOnJoin = joined.rounds.flat().length;
    assert.equal(movedOnJoin, 8, 'exactly the 8 shards the newcomers take');

    // Act: d leaves (its poll goes stale; its shards still show on it until they fail over).
    const later = joined.now + DEFAULT_LIVENESS_MS + 1;
    const left = settle(
      {
        ...joined.view,
        workers: joined.view.workers.filter((w) => w.identity !== 'd'),
      },
      {},
      { state: joined.state, now: later },
    );

    // Assess: d's 4 shards went to the others (reason CAPACITY: they had no live worker), within ceil(16/3) + 1 = 7.
    const fromD = left.rounds.flat().filter((move) => move.from === queueOf('d'));
    assert.equal(fromD.length, 4);
    assert.ok(fromD.every((move) => move.reason === 'CAPACITY' && move.rule === 'UNPLACED'));
    const after = counts(left.view);
    delete after.d;
    assert.deepEqual(Object.keys(after).sort(), ['a', 'b', 'c']);
    assert.ok(
      Object.values(after).every((n) => n <= 7),
      JSON.stringify(after),
    );
    assert.equal(
      Object.values(after).reduce((x, y) => x + y, 0),
      16,
    );
    assert.ok(Math.max(...Object.values(after)) - Math.min(...Object.values(after)) <= 1, JSON.stringify(after));
  });

  test('the bound is exactly ceil(S/N) + 1: 6 of 16 on one of 4 workers is a violation, 5 is not', () => {
    // Every shard moved a moment ago, so only the count bound may move anything (load balance waits out the cooldown).
    const layout = (counts: number[]) =>
      counts.flatMap((n, w) => Array.from({ length: n }, () => ['a', 'b', 'c', 'd'][w]));
    const cooling = emptyPlacementState();
    for (let i = 0; i < 16; i++) cooling.movedAt[shardIdOf(i)] = T0 - 1_000;
    const workers = [worker('a'), worker('b'), worker('c'), worker('d')];

    const over = plan(fleet(workers, layout([6, 4, 3, 3])), cooling);
    assert.deepEqual(
      over.map((move) => [move.from, move.to, move.rule]),
      [[queueOf('a'), queueOf('c'), 'BOUND']],
    );
    assert.deepEqual(plan(fleet(workers, layout([5, 5, 3, 3])), cooling), []);
  });

  test('a worker over its bound gives shards to the lightest below its target, even ones cooling down', () => {
    // Prepare: 12 shards, a holds 10, b holds 2 (bound 7); a's shards all moved a moment ago.
    const view = fleet(
      [worker('a'), worker('b')],
      Array.from({ length: 12 }, (_, i) => (i < 10 ? 'a' : 'b')),
    );
    const state = emptyPlacementState();
    for (let i = 0; i < 10; i++) state.movedAt[shardIdOf(i)] = T0 - 1_000;

    // Act
    const moves = plan(view, state);

    // Assess: 2 moves (ceil(12/8)), both count-bound moves from a to b, although a's shards are in their cooldown.
    assert.equal(moves.length, 2);
    assert.ok(moves.every((move) => move.from === queueOf('a') && move.to === queueOf('b') && move.rule === 'BOUND'));
  });
});

describe('placement: caps', () => {
  test('water-filling: a capped worker takes its cap, the others share the rest', () => {
    // Prepare: 10 shards all on b; a is capped at 2, b and c are not.
    const view = fleet(
      [worker('a', { maxShards: 2 }), worker('b'), worker('c')],
      Array.from({ length: 10 }, () => 'b'),
    );

    // Act
    const settled = settle(view);

    // Assess: level 4 for b and c (10 - 2 over 2): a 2, b 4, c 4.
    assert.deepEqual(counts(settled.view), { a: 2, b: 4, c: 4 });
    assert.ok(settled.rounds.every((round) => round.length <= 2));
  });

  test('a cap remembered in the state still binds when the view no longer carries it', () => {
    // Prepare: a said maxShards 1 in an earlier view; it holds nothing now, so this view has no cap for it.
    const earlier = fleet([worker('a', { maxShards: 1 }), worker('b')], ['b']);
    const state = updatePlacementState(emptyPlacementState(), earlier, {}, T0, allShards(earlier));
    const view = fleet([worker('a'), worker('b')], [undefined, undefined, undefined, undefined]);

    // Act
    const moves = plan(view, state, { maxMovesPerRound: 10 });

    // Assess: a gets one shard, b three.
    assert.equal(state.workers[queueOf('a')]?.maxShards, 1);
    assert.deepEqual(moves.filter((move) => move.to === queueOf('a')).length, 1);
    assert.deepEqual(moves.filter((move) => move.to === queueOf('b')).length, 3);
  });

  test('unplaced shards go to workers with room, and nowhere once every worker is at its cap', () => {
    // Prepare: 10 shards; a (cap 3) holds 3; b (cap 4) holds 2; five are not placed.
    const view = fleet(
      [worker('a', { maxShards: 3 }), worker('b', { maxShards: 4 })],
      ['a', 'a', 'a', 'b', 'b', undefined, undefined, undefined, undefined, undefined],
    );

    // Act
    const moves = plan(view, emptyPlacementState(), { maxMovesPerRound: 10 });
    const summary = summarizeFleet(view, emptyPlacementState(), {}, T0, allShards(view));

    // Assess: b has room for 2; nothing goes to a; 3 wait for capacity.
    assert.deepEqual(
      moves.map((move) => [move.shardId, move.to, move.reason]),
      [
        [shardIdOf(5), queueOf('b'), 'CAPACITY'],
        [shardIdOf(6), queueOf('b'), 'CAPACITY'],
      ],
    );
    assert.equal(summary.capacity, 7);
    assert.equal(summary.waitingForCapacity, 3);
    assert.equal(summary.unplaced, 5);

    // And when both are full, nothing moves.
    const full = fleet(
      [worker('a', { maxShards: 3 }), worker('b', { maxShards: 4 })],
      ['a', 'a', 'a', 'b', 'b', 'b', 'b', undefined, undefined, undefined],
    );
    assert.deepEqual(plan(full, emptyPlacementState(), { maxMovesPerRound: 10 }), []);
  });

  test('a shard just started is left to place itself for the grace period, then placed', () => {
    const view = fleet([worker('a'), worker('b')], ['a', undefined]);
    const startedAt = { [shardIdOf(1)]: T0 - 5_000 };
    assert.deepEqual(planPlacement(view, emptyPlacementState(), {}, T0, allShards(view), startedAt), []);
    const later = planPlacement(view, emptyPlacementState(), {}, T0 + 30_000, allShards(view), startedAt);
    assert.deepEqual(
      later.map((move) => [move.shardId, move.to]),
      [[shardIdOf(1), queueOf('b')]],
    );
  });
});

describe('placement: load', () => {
  /** 16 shards over 4 workers, 4 each; shard 0 (on a) carries `hot` KB/s, the others `idle`. */
  function hotFleet(hot: number, idle: number, reported = 16): FleetView {
    return fleet(
      [worker('a'), worker('b'), worker('c'), worker('d')],
      Array.from({ length: 16 }, (_, i) => ['a', 'b', 'c', 'd'][Math.floor(i / 4)]),
      Array.from({ length: 16 }, (_, i) =>
        i < reported ? { kbps: i === 0 ? hot : idle, recordsPerSec: i === 0 ? 500 : 1, reportedAt: T0 } : {},
      ),
    );
  }

  test('a hot shard and 15 idle ones: the hot shard ends up on a worker with fewer shards', () => {
    // Act
    const settled = settle(hotFleet(500, 0.5));

    // Assess: load-weighted; a keeps only its hot shard, the idle ones fill the others' +1 slack.
    const summary = summarizeFleet(settled.view, settled.state, {}, settled.now, allShards(settled.view));
    assert.equal(summary.loadWeighted, true);
    assert.equal(settled.view.shards[0]!.worker, queueOf('a'), 'the hot shard did not move');
    const c = counts(settled.view);
    assert.ok(c.a! < Math.min(c.b!, c.c!, c.d!), JSON.stringify(c));
    assert.deepEqual(c, { a: 1, b: 5, c: 5, d: 5 });
    assert.ok(settled.rounds.flat().every((move) => move.from === queueOf('a') && move.shardId !== shardIdOf(0)));
  });

  test('a load-weighted move: the one that best lowers the busier of the two workers', () => {
    // Prepare: 2 workers, 4 shards each; a carries 3 × 100 + 10, b 4 × 10.
    const loads = [100, 100, 100, 10, 10, 10, 10, 10];
    const view = fleet(
      [worker('a'), worker('b')],
      loads.map((_, i) => (i < 4 ? 'a' : 'b')),
      loads.map((kbps) => ({ kbps, reportedAt: T0 })),
    );

    // Act
    const moves = plan(view);

    // Assess: moving a 100 lowers max(310, 40) to max(210, 140) = 210 (best); the 10 only to 300.
    assert.deepEqual(
      moves.map((move) => [move.shardId, move.from, move.to, move.rule]),
      [[shardIdOf(0), queueOf('a'), queueOf('b'), 'LOAD']],
    );
  });

  test('count-only when the fleet is nearly idle, when too few shards report, or when reports are old', () => {
    // Balanced counts, all the load on a: nothing moves unless load-weighted.
    const cases: [string, FleetView, number][] = [
      ['fleet total 47.5 KB/s <= 64', hotFleet(40, 0.5), T0],
      ['10 of 16 shards report (< 80 %)', hotFleet(500, 0.5, 10), T0],
      ['reports 2 minutes old', hotFleet(500, 0.5), T0 + 120_000],
    ];
    for (const [why, view, now] of cases) {
      const state = updatePlacementState(emptyPlacementState(), view, {}, now, allShards(view));
      assert.deepEqual(planPlacement(view, state, {}, now, allShards(view)), [], why);
      assert.equal(summarizeFleet(view, state, {}, now, allShards(view)).loadWeighted, false, why);
    }
    // Control: with all reports fresh and 500 KB/s it is load-weighted and moves.
    assert.ok(plan(hotFleet(500, 0.5)).length > 0);
  });

  test('unknown loads take the mean of the known ones', () => {
    // Prepare: 10 shards, 9 report (90 %): 100, 7 × 20 and 50 (not placed yet); shard 9 (not placed) reports nothing.
    const view = fleet(
      [worker('a'), worker('b')],
      ['a', 'a', 'a', 'a', 'b', 'b', 'b', 'b', undefined, undefined],
      [100, 20, 20, 20, 20, 20, 20, 20, 50].map((kbps) => ({ kbps, reportedAt: T0 })),
    );

    // Act
    const moves = plan(view, emptyPlacementState(), { maxMovesPerRound: 10 }).filter((m) => m.rule === 'UNPLACED');

    // Assess: shard 9 weighs the known mean 290 / 9 = 32.2, so it is placed after the 50 one (heaviest first).
    assert.deepEqual(
      moves.map((move) => move.shardId),
      [shardIdOf(8), shardIdOf(9)],
    );
    assert.ok(Math.abs(moves[1]!.weight - 290 / 9) < 1e-9, String(moves[1]!.weight));
    assert.equal(moves[0]!.weight, 50);
  });
});

describe('placement: no churn', () => {
  test('no moves for balanced input, by count or by load within 1.2 × the mean', () => {
    const even = fleet(
      [worker('a'), worker('b'), worker('c'), worker('d')],
      Array.from({ length: 16 }, (_, i) => ['a', 'b', 'c', 'd'][i % 4]),
    );
    assert.deepEqual(plan(even), []);
    // 17 shards over 4 workers: 5, 4, 4, 4 is balanced too.
    const odd = fleet(
      [worker('a'), worker('b'), worker('c'), worker('d')],
      Array.from({ length: 17 }, (_, i) => ['a', 'b', 'c', 'd'][i % 4]),
    );
    assert.deepEqual(plan(odd), []);
    // Loads 110/100/95/95 per worker: within 1.2 × 100.
    const perWorker = [110, 100, 95, 95];
    const loaded = fleet(
      [worker('a'), worker('b'), worker('c'), worker('d')],
      Array.from({ length: 8 }, (_, i) => ['a', 'b', 'c', 'd'][i % 4]),
      Array.from({ length: 8 }, (_, i) => ({ kbps: perWorker[i % 4]! / 2, reportedAt: T0 })),
    );
    assert.deepEqual(plan(loaded), []);
  });

  test('a gain below 10 % of the mean is not worth a move', () => {
    // a carries 130 (13 × 10), b 90, c 80 over... count-only with many shards: 31 vs 24, 25, 24 (mean 26, 31 > 31.2? no).
    // Load-weighted: a 2 × 70 = 140, b 2 × 40 + 1 × 2 = 82, c 2 × 40 = 80: mean 100.7, a > 120.8; moving a 70 to c
    // gives max(70, 150) = 150: worse; no other shard on a. Nothing moves.
    const view = fleet(
      [worker('a'), worker('b'), worker('c')],
      ['a', 'a', 'b', 'b', 'b', 'c', 'c'],
      [70, 70, 40, 40, 2, 40, 40].map((kbps) => ({ kbps, reportedAt: T0 })),
    );
    assert.deepEqual(plan(view), []);
  });

  test('cooldown: a shard moved within 60 s is not moved for load; a worker with only such shards gives none', () => {
    // Count-only, within the bound: a 5, b 5, c 5, d 1 (bound 5, mean 4, 5 > 4.8): one of a, b or c gives one to d.
    const view = fleet(
      [worker('a'), worker('b'), worker('c'), worker('d')],
      Array.from({ length: 16 }, (_, i) => (i < 5 ? 'a' : i < 10 ? 'b' : i < 15 ? 'c' : 'd')),
    );
    const fresh = plan(view);
    assert.equal(fresh[0]?.from, queueOf('a'));

    // a's shards cooling down: b gives instead.
    const state = emptyPlacementState();
    for (let i = 0; i < 5; i++) state.movedAt[shardIdOf(i)] = T0 - 30_000;
    const cooled = plan(view, state);
    assert.equal(cooled.length, 2);
    assert.deepEqual(
      cooled.map((move) => [move.from, move.to]),
      [
        [queueOf('b'), queueOf('d')],
        [queueOf('c'), queueOf('d')],
      ],
    );
    // Every shard of a, b and c cooling down: nothing; after the cooldown, a gives again.
    for (let i = 0; i < 15; i++) state.movedAt[shardIdOf(i)] = T0 - 30_000;
    assert.deepEqual(plan(view, state), []);
    const after = T0 - 30_000 + DEFAULT_MOVE_COOLDOWN_MS;
    const expired = updatePlacementState(state, view, {}, after, allShards(view));
    assert.deepEqual(expired.movedAt, {});
    assert.equal(plan(view, expired, {}, after)[0]?.from, queueOf('a'));
  });

  test('in flight: a shard being moved is not moved again, and counts where it is going', () => {
    // Prepare: 8 shards; a holds 8, b and c none; moves of shards 0, 1, 2 to b are in flight (so b is at bound 4 of
    // ceil(8/3)+1... bound 4) and shard 3 to c.
    const view = fleet(
      [worker('a'), worker('b'), worker('c')],
      Array.from({ length: 8 }, () => 'a'),
    );
    let state = emptyPlacementState();
    state = recordMoves(
      state,
      [0, 1, 2].map((i) => ({ shardId: shardIdOf(i), from: queueOf('a'), to: queueOf('b'), reason: 'JOIN' as const })),
      T0 - 5_000,
    ).state;
    state = recordMoves(
      state,
      [{ shardId: shardIdOf(3), from: queueOf('a'), to: queueOf('c'), reason: 'JOIN' }],
      T0 - 5_000,
    ).state;
    assert.equal(state.seq, 4);
    state = updatePlacementState(state, view, {}, T0, allShards(view));
    assert.equal(Object.keys(state.inFlight).length, 4, 'nothing landed yet, nothing expired');

    // Act
    const moves = plan(view, state, { maxMovesPerRound: 10 });

    // Assess: counted at their targets, a holds 4, b 3, c 1: no violation; count balance moves one from a to c.
    assert.ok(moves.every((move) => ![0, 1, 2, 3].map(shardIdOf).includes(move.shardId)));
    assert.deepEqual(
      moves.map((move) => [move.from, move.to]),
      [[queueOf('a'), queueOf('c')]],
    );
  });

  test('deterministic: the same input in any order plans the same moves', () => {
    const workers = ['a', 'b', 'c', 'd', 'e'].map((name) => worker(name));
    const base = fleet(
      workers,
      Array.from({ length: 40 }, (_, i) => (i < 25 ? 'a' : i < 35 ? 'b' : i < 38 ? undefined : 'c')),
      Array.from({ length: 40 }, (_, i) => ({ kbps: (i * 37) % 50, reportedAt: T0 })),
    );
    const first = plan(base);
    assert.ok(first.length > 0);
    assert.deepEqual(plan(base), first);
    const shuffled: FleetView = {
      ...base,
      workers: [...base.workers].reverse(),
      shards: [...base.shards].sort(
        (x, y) => (((x.kbps ?? 0) * 7 + x.shardId.length) % 11) - (((y.kbps ?? 0) * 7) % 11),
      ),
    };
    assert.deepEqual(planPlacement(shuffled, emptyPlacementState(), {}, T0, allShards(base).reverse()), first);
  });
});

describe('placement: liveness and suspects', () => {
  test('a worker leaving (SIGTERM) gets nothing although its last poll looks fresh; a later poll makes it eligible again', () => {
    // a holds 6, b holds 0 and told us it is leaving (its shards were handed over); c holds 0 and is new.
    const view = fleet([worker('a'), worker('b'), worker('c')], ['a', 'a', 'a', 'a', 'a', 'a']);
    const leaving = markLeaving(emptyPlacementState(), queueOf('b'), T0 + 1_000);
    assert.equal(markLeaving(leaving, queueOf('b'), T0 + 2_000), leaving, 'marked once');
    const state = updatePlacementState(leaving, view, {}, T0 + 1_000, allShards(view));
    const moves = plan(view, state, { maxMovesPerRound: 10 }, T0 + 1_000);
    assert.ok(moves.length > 0);
    assert.ok(
      moves.every((move) => move.to === queueOf('c')),
      `every move goes to c, none to the leaving b: ${JSON.stringify(moves)}`,
    );
    // Without the mark, b would get shards (it holds none and looks live).
    assert.ok(
      plan(view, emptyPlacementState(), { maxMovesPerRound: 10 }, T0 + 1_000).some((m) => m.to === queueOf('b')),
    );
    // A process polling under b's identity after the mark (a restart) is eligible again.
    const restarted = fleet(
      [worker('a'), worker('b', { lastAccessTime: T0 + 5_000 }), worker('c')],
      ['a', 'a', 'a', 'a', 'a', 'a'],
    );
    assert.equal(
      updatePlacementState(state, restarted, {}, T0 + 6_000, allShards(restarted)).workers[queueOf('b')],
      undefined,
    );
  });

  test('a stale worker is not a target, and its shards go to live workers', () => {
    const view = fleet([worker('a'), worker('b', { lastAccessTime: T0 - DEFAULT_LIVENESS_MS - 1 })], ['a', 'b', 'b']);
    const moves = plan(view);
    // Both in one round: shards with no live worker are not limited by the round's max(1, ceil(3 / 8)) = 1 move.
    assert.deepEqual(
      moves.map((move) => [move.shardId, move.from, move.to, move.reason]),
      [
        [shardIdOf(1), queueOf('b'), queueOf('a'), 'CAPACITY'],
        [shardIdOf(2), queueOf('b'), queueOf('a'), 'CAPACITY'],
      ],
    );
    // Runs recorded before (unplacedFirst: false) planned one a round.
    assert.deepEqual(
      plan(view, emptyPlacementState(), { unplacedFirst: false }).map((move) => move.shardId),
      [shardIdOf(1)],
    );
  });

  test('a move that lands elsewhere makes its target suspect: excluded until it polls again', () => {
    // Prepare: shard 2 was sent from a to c; the view shows it on b (c's queue did not take it).
    const sent = recordMoves(
      emptyPlacementState(),
      [{ shardId: shardIdOf(2), from: queueOf('a'), to: queueOf('c'), reason: 'BALANCE' }],
      T0,
    ).state;
    const view = fleet([worker('a'), worker('b'), worker('c')], ['a', 'a', 'b', 'b', 'a', 'a', 'a']);

    // Act
    const state = updatePlacementState(sent, view, {}, T0 + 2_000, allShards(view));
    const moves = plan(view, state, { maxMovesPerRound: 10 }, T0 + 2_000);

    // Assess: c is suspect and gets nothing although it holds nothing; a's surplus goes to b.
    assert.deepEqual(state.inFlight, {});
    assert.equal(state.workers[queueOf('c')]?.suspectSince, T0 + 2_000);
    assert.ok(moves.length > 0);
    assert.ok(moves.every((move) => move.to === queueOf('b')));
    const summary = summarizeFleet(view, state, {}, T0 + 2_000, allShards(view));
    assert.deepEqual(
      summary.workers.map((w) => [w.identity, w.live, w.suspect]),
      [
        ['a', true, false],
        ['b', true, false],
        ['c', true, true],
      ],
    );

    // A shard on a live suspect is served there: it is not moved off it.
    const onSuspect = fleet([worker('a'), worker('c')], ['a', 'c']);
    assert.deepEqual(plan(onSuspect, state, {}, T0 + 3_000), []);

    // c polls again after it was marked: no longer suspect, a target again.
    const polled = fleet(
      [worker('a'), worker('b'), worker('c', { lastAccessTime: T0 + 5_000 })],
      ['a', 'a', 'b', 'b', 'a', 'a', 'a'],
    );
    const cleared = updatePlacementState(state, polled, {}, T0 + 6_000, allShards(polled));
    assert.equal(cleared.workers[queueOf('c')], undefined);
    assert.ok(plan(polled, cleared, { maxMovesPerRound: 10 }, T0 + 6_000).some((move) => move.to === queueOf('c')));
  });

  test('a move that never lands expires after 60 s and suspects its target, unless the target is at its cap', () => {
    const view = fleet([worker('a'), worker('b', { maxShards: 1 }), worker('c')], ['a', 'a', 'b']);
    let state = recordMoves(
      emptyPlacementState(),
      [
        { shardId: shardIdOf(0), from: queueOf('a'), to: queueOf('c'), reason: 'BALANCE' },
        { shardId: shardIdOf(1), from: queueOf('a'), to: queueOf('b'), reason: 'BALANCE' },
      ],
      T0,
    ).state;
    state = updatePlacementState(state, view, {}, T0 + 59_999, allShards(view));
    assert.deepEqual(Object.keys(state.inFlight).sort(), [shardIdOf(0), shardIdOf(1)]);
    state = updatePlacementState(state, view, {}, T0 + 60_000, allShards(view));
    assert.deepEqual(state.inFlight, {});
    assert.equal(state.workers[queueOf('c')]?.suspectSince, T0 + 60_000);
    assert.equal(state.workers[queueOf('b')]?.suspectSince, undefined, 'b is full, not gone');
  });

  test('a move lands: no longer in flight, nobody suspect; a move to a shard not placed yet waits for its pin', () => {
    let state = recordMoves(
      emptyPlacementState(),
      [
        { shardId: shardIdOf(0), from: queueOf('a'), to: queueOf('b'), reason: 'BALANCE' },
        { shardId: shardIdOf(1), to: queueOf('b'), reason: 'CAPACITY' },
      ],
      T0,
    ).state;
    const polling = { lastAccessTime: T0 + 110_000 };
    const view = fleet([worker('a', polling), worker('b', polling)], ['b', undefined]);
    state = updatePlacementState(state, view, {}, T0 + 120_000, allShards(view));
    assert.deepEqual(Object.keys(state.inFlight), [shardIdOf(1)], 'the unplaced one keeps its target');
    assert.deepEqual(state.workers, {});
    // Its target is gone: the move is dropped (no suspect: it never got the chance), and it is planned again.
    const gone = fleet([worker('a', polling)], ['a', undefined]);
    state = updatePlacementState(state, gone, {}, T0 + 121_000, allShards(gone));
    assert.deepEqual(state.inFlight, {});
    assert.deepEqual(
      planPlacement(gone, state, {}, T0 + 121_000, allShards(gone)).map((move) => [move.shardId, move.to]),
      [[shardIdOf(1), queueOf('a')]],
    );
  });

  test('no eligible worker: nothing planned', () => {
    const view = fleet([worker('a', { lastAccessTime: T0 - 100_000 })], [undefined, 'a']);
    assert.deepEqual(plan(view), []);
  });
});

describe('placement: random fleets settle', () => {
  /** A small seeded generator (LCG), so a failure names a reproducible case. */
  function random(seed: number) {
    let state = seed >>> 0;
    return (n: number) => {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      return state % n;
    };
  }

  test('200 seeded fleets: placement settles, within every bound and cap, all placed where capacity allows', () => {
    for (let seed = 1; seed <= 200; seed++) {
      // Prepare: 1-6 workers (some capped), 0-40 shards, some not placed, loads on half the cases.
      const next = random(seed);
      const names = Array.from({ length: 1 + next(6) }, (_, i) => `w${i}`);
      const workers = names.map((name) => worker(name, next(3) === 0 ? { maxShards: 1 + next(8) } : {}));
      const shardCount = next(41);
      const loaded = next(2) === 0;
      // Where the shards start: anywhere (a worker never holds more than its cap), a fifth not placed.
      const held = new Map<string, number>();
      const layout = Array.from({ length: shardCount }, () => {
        const w = workers[next(workers.length)]!;
        if (next(5) === 0 || (held.get(w.identity) ?? 0) >= (w.maxShards ?? Infinity)) return undefined;
        held.set(w.identity, (held.get(w.identity) ?? 0) + 1);
        return w.identity;
      });
      const view = fleet(
        workers,
        layout,
        Array.from({ length: shardCount }, () =>
          loaded ? { kbps: next(4) === 0 ? 200 + next(800) : next(50), reportedAt: T0 } : {},
        ),
      );

      // Act: rounds a cooldown apart, so that a round without moves means nothing is left to do.
      const settled = settle(view, {}, {}, DEFAULT_MOVE_COOLDOWN_MS);

      // Assess
      const c = counts(settled.view);
      const caps = workers.map((w) => w.maxShards ?? Infinity);
      const capacity = caps.reduce((x, y) => x + y, 0);
      const placed = Object.values(c).reduce((x, y) => x + y, 0);
      const level = capacity <= shardCount ? Infinity : waterLevel(caps, shardCount);
      const why = `seed ${seed}: ${JSON.stringify({ c, caps, shardCount, loaded })}`;
      assert.equal(placed, Math.min(shardCount, capacity), why);
      workers.forEach((w, i) => {
        assert.ok(c[w.identity]! <= Math.min(caps[i]!, Math.ceil(level) + 1), why);
      });
      assert.ok(settled.rounds.flat().length <= 3 * shardCount, `${why}: ${settled.rounds.flat().length} moves`);
      // Settled means settled: the same view a minute later, cooldowns over, plans nothing either.
      const later = settled.now + DEFAULT_MOVE_COOLDOWN_MS;
      const again = settle(settled.view, {}, { state: settled.state, now: later });
      assert.equal(again.rounds.length, 0, `${why}: moves after settling ${JSON.stringify(again.rounds)}`);
    }
  });

  /** The level λ of water-filling `shards` over `caps`: Σ min(cap, λ) = shards. */
  function waterLevel(caps: number[], shards: number): number {
    let low = 0;
    let high = shards;
    for (let i = 0; i < 60; i++) {
      const mid = (low + high) / 2;
      if (caps.reduce((sum, cap) => sum + Math.min(cap, mid), 0) >= shards) high = mid;
      else low = mid;
    }
    return high;
  }
});

describe('placement: shards with no worker first', () => {
  // Two workers at their cap of 4 hold shards 0-7; shards 8-15 wait (WAITING_FOR_WORKER); two workers (no cap seen yet)
  // have just joined. This is the --max-shards scenario of test/cli/cli-scale-out.test.ts.
  const capped = { maxShards: 4 };
  const placement = [
    ...Array<string>(4).fill('a'),
    ...Array<string>(4).fill('b'),
    ...Array<undefined>(8).fill(undefined),
  ];
  const joined = fleet([worker('a', capped), worker('b', capped), worker('c'), worker('d')], placement);

  test('capacity appearing places every waiting shard in one round, and moves no served shard', () => {
    const moves = plan(joined);
    assert.deepEqual(
      moves.map((move) => move.shardId),
      placement.flatMap((name, i) => (name === undefined ? [shardIdOf(i)] : [])),
    );
    assert.ok(moves.every((move) => move.reason === 'CAPACITY' && move.from === undefined));
    assert.deepEqual(
      counts({
        ...joined,
        shards: joined.shards.map((s) => ({
          ...s,
          worker: moves.find((m) => m.shardId === s.shardId)?.to ?? s.worker,
        })),
      }),
      { a: 4, b: 4, c: 4, d: 4 },
    );
    // Runs recorded before: at most max(1, ceil(16 / 8)) = 2 a round.
    assert.equal(plan(joined, emptyPlacementState(), { unplacedFirst: false }).length, 2);
  });

  test('while waiting shards are in their grace no served shard is moved for load; the next round is due at its end', () => {
    const startedAt = Object.fromEntries(allShards(joined).map((id) => [id, T0 - 7_000]));
    const moves = planPlacement(joined, emptyPlacementState(), {}, T0, allShards(joined), startedAt);
    assert.deepEqual(moves, [], 'the waiting shards place themselves or are placed at the end of their grace');
    assert.equal(nextUnplacedDeadline(joined, emptyPlacementState(), {}, T0, allShards(joined), startedAt), T0 + 3_000);
    // Before, the newcomers drew served shards away from a and b (each a handoff) while 8 shards had no worker.
    const legacy = planPlacement(
      joined,
      emptyPlacementState(),
      { unplacedFirst: false },
      T0,
      allShards(joined),
      startedAt,
    );
    assert.ok(legacy.length > 0 && legacy.every((move) => move.from !== undefined));
    // At the end of the grace they are placed.
    assert.equal(planPlacement(joined, emptyPlacementState(), {}, T0 + 3_000, allShards(joined), startedAt).length, 8);
  });

  test('a move to a waiting shard that its target refused (it filled up meanwhile) is planned again', () => {
    // Shard 8 was sent to c at T0; c took other shards through the shared queue and refused it. c now holds 3 (below
    // the bound), so only time tells the move failed.
    const sent = recordMoves(
      emptyPlacementState(),
      [{ shardId: shardIdOf(8), to: queueOf('c'), reason: 'CAPACITY' }],
      T0,
    ).state;
    const later = fleet(
      [worker('a', capped), worker('b', capped), worker('c', capped), worker('d', capped)],
      [...placement.slice(0, 8), undefined, 'c', 'c', 'c', 'd', 'd', 'd', 'd'],
    );
    assert.equal(nextUnplacedDeadline(later, sent, {}, T0 + 1_000, allShards(later)), T0 + DEFAULT_UNPLACED_LAND_MS);

    // Within the land time the move stands and nothing more is sent.
    const early = updatePlacementState(sent, { ...later, at: T0 + 5_000 }, {}, T0 + 5_000, allShards(later));
    assert.deepEqual(Object.keys(early.inFlight), [shardIdOf(8)]);
    assert.deepEqual(planPlacement({ ...later, at: T0 + 5_000 }, early, {}, T0 + 5_000, allShards(later)), []);

    // A view taken after it: the move is given up, and the shard goes to the worker with room.
    const at = T0 + DEFAULT_UNPLACED_LAND_MS;
    const state = updatePlacementState(sent, { ...later, at }, {}, at, allShards(later));
    assert.deepEqual(state.inFlight, {});
    assert.equal(state.workers[queueOf('c')]?.suspectSince, undefined, 'a refusal is not a fault of the target');
    assert.deepEqual(
      planPlacement({ ...later, at }, state, {}, at, allShards(later)).map((move) => [move.shardId, move.to]),
      [[shardIdOf(8), queueOf('c')]],
    );
    // Runs recorded before kept the move for as long as its target looked to have room.
    const legacy = updatePlacementState(sent, { ...later, at }, { unplacedFirst: false }, at, allShards(later));
    assert.deepEqual(Object.keys(legacy.inFlight), [shardIdOf(8)]);
  });
});

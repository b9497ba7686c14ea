/**
 * The per-pin load meter (one-minute averages of KB/s and records/s) and the fleet-view comparison `watchFleet`
 * returns on. No server.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { fleetChange } from '../../src/activities/fleet-activities';
import { ShardLoadMeter } from '../../src/activities/shard-load';
import type { FleetView } from '../../src/fleet-types';

const ref = { applicationName: 'app', streamName: 'stream', shardId: 'shardId-000000000000' };

function clock(start = 1_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

describe('ShardLoadMeter', () => {
  test('the first sample is the rate over its interval; later ones move towards the new rate by 1 - e^(-dt/60 s)', () => {
    const time = clock();
    const meter = new ShardLoadMeter({ now: time.now });
    meter.track(ref, 'p1');
    // 30 s at 100 KB/s and 50 records/s.
    meter.add(ref, 'p1', 30 * 100 * 1024, 30 * 50);
    time.advance(30_000);
    const first = meter.sample(ref, 'p1');
    assert.equal(first.kbps, 100);
    assert.equal(first.recordsPerSec, 50);
    assert.equal(first.bytes, 30 * 100 * 1024);
    assert.equal(first.records, 1500);

    // 30 s of nothing: the average decays by e^(-0.5), it does not drop to 0.
    time.advance(30_000);
    const quiet = meter.sample(ref, 'p1');
    assert.ok(Math.abs((quiet.kbps ?? -1) - 100 * Math.exp(-0.5)) < 1e-9, `kbps ${quiet.kbps}`);
    assert.ok(Math.abs((quiet.recordsPerSec ?? -1) - 50 * Math.exp(-0.5)) < 1e-9);
    assert.equal(quiet.records, 1500, 'totals keep counting');
  });

  test('a sample less than a second after the previous one changes nothing; an unmeasured pin has no rate', () => {
    const time = clock();
    const meter = new ShardLoadMeter({ now: time.now });
    meter.track(ref, 'p1');
    meter.add(ref, 'p1', 1024, 1);
    time.advance(200);
    assert.deepEqual(meter.sample(ref, 'p1'), { bytes: 1024, records: 1 });
    time.advance(1_800);
    // The pending batch counts over the whole 2 s since tracking began.
    assert.deepEqual(meter.sample(ref, 'p1'), { bytes: 1024, records: 1, kbps: 0.5, recordsPerSec: 0.5 });
  });

  test('pins are measured apart, and retain() forgets the pins no longer hosted', () => {
    const time = clock();
    const meter = new ShardLoadMeter({ now: time.now });
    meter.add(ref, 'p1', 2048, 2);
    meter.add(ref, 'p2', 1024, 1);
    meter.add({ ...ref, shardId: 'shardId-000000000001' }, 'p1', 10, 1);
    assert.equal(meter.size, 3);
    meter.retain([{ ref, pin: 'p2' }]);
    assert.equal(meter.size, 1);
    time.advance(1_000);
    assert.deepEqual(meter.sample(ref, 'p2'), { bytes: 1024, records: 1, kbps: 1, recordsPerSec: 1 });
  });
});

describe('fleetChange', () => {
  const at = 10_000_000;
  const view = (over: Partial<FleetView> = {}): FleetView => ({
    at,
    workers: [
      { workerQueue: 'tq@a', identity: 'a', lastAccessTime: at - 1_000 },
      { workerQueue: 'tq@b', identity: 'b', lastAccessTime: at - 60_000 },
    ],
    shards: [
      { shardId: 's0', worker: 'tq@a', kbps: 1, ended: false },
      { shardId: 's1', worker: 'tq@b', kbps: 2, ended: false },
    ],
    ...over,
  });

  test('no change: newer polls, other loads, a later time at which the same workers are live', () => {
    const known = view();
    const later = view({
      at: at + 5_000,
      workers: known.workers.map((w) => ({ ...w, lastAccessTime: w.lastAccessTime + 5_000 })),
      shards: known.shards.map((s) => ({ ...s, kbps: 99, recordsPerSec: 5, reportedAt: at })),
    });
    assert.equal(fleetChange(known, later), undefined);
  });

  test('a worker joins, goes stale, or reports a cap', () => {
    const known = view();
    const joined = view({
      workers: [...known.workers, { workerQueue: 'tq@c', identity: 'c', lastAccessTime: at }],
    });
    assert.equal(fleetChange(known, joined), 'workers');
    // b polled 60 s before `at`: 11 s later it is past the 70 s liveness.
    assert.equal(fleetChange(known, view({ at: at + 11_000 })), 'workers');
    const capped = view({ workers: known.workers.map((w) => (w.identity === 'a' ? { ...w, maxShards: 4 } : w)) });
    assert.equal(fleetChange(known, capped), 'workers');
  });

  test('a shard moves, ends, appears or disappears', () => {
    const known = view();
    const [s0, s1] = known.shards;
    assert.ok(s0 && s1);
    assert.equal(fleetChange(known, view({ shards: [{ ...s0, worker: 'tq@b' }, s1] })), 'shard s0 moved');
    assert.equal(fleetChange(known, view({ shards: [s0, { ...s1, ended: true }] })), 'shard s1 ended');
    assert.equal(fleetChange(known, view({ shards: [s0, s1, { shardId: 's2', ended: false }] })), 'shards');
    assert.equal(fleetChange(known, view({ shards: [s0] })), 'shards');
  });
});

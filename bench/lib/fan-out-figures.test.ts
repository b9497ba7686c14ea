/**
 * The fan-out measurement's arithmetic. Needs no stack: `node --import tsx --test bench/lib/fan-out-figures.test.ts`.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { catchUpFigures, latencyFigures, ratio } from './fan-out-figures';

describe('latencyFigures', () => {
  test('takes percentiles by nearest rank over every sample', () => {
    const lags = Array.from({ length: 100 }, (_, i) => 100 - i); // 100 .. 1, unsorted on purpose
    assert.deepEqual(latencyFigures(lags), { samples: 100, p50Ms: 50, p90Ms: 90, p99Ms: 99, maxMs: 100 });
  });

  test('rounds to whole milliseconds', () => {
    assert.deepEqual(latencyFigures([12.4, 12.6]), { samples: 2, p50Ms: 12, p90Ms: 13, p99Ms: 13, maxMs: 13 });
  });
});

describe('catchUpFigures', () => {
  test('rates over the whole run and after the first batch', () => {
    const figures = catchUpFigures(1_000, [
      { records: 1_000, bytes: 1_024_000, at: 3_000 },
      { records: 500, bytes: 512_000, at: 3_500 },
      { records: 1_500, bytes: 1_536_000, at: 4_000 },
    ]);
    assert.equal(figures.records, 3_000);
    assert.equal(figures.batches, 3);
    assert.equal(figures.firstBatchMs, 2_000);
    assert.equal(figures.elapsedMs, 3_000);
    assert.equal(figures.recordsPerSec, 1_000);
    assert.equal(figures.kibPerSec, 1_000);
    // After the first batch: 2,000 records (2,000 KiB) in 1 s.
    assert.equal(figures.steadyRecordsPerSec, 2_000);
    assert.equal(figures.steadyKibPerSec, 2_000);
    assert.equal(figures.steadyMibPerSec, 1.95);
  });

  test('has no steady rate with one batch, and refuses none', () => {
    const figures = catchUpFigures(0, [{ records: 10, bytes: 100, at: 500 }]);
    assert.equal(figures.recordsPerSec, 20);
    assert.equal(figures.steadyRecordsPerSec, null);
    assert.throws(() => catchUpFigures(0, []), /no batches/);
  });
});

describe('ratio', () => {
  test('divides, and gives null for a missing or zero base', () => {
    assert.equal(ratio(300, 200), 1.5);
    assert.equal(ratio(1, 3), 0.33);
    assert.equal(ratio(5, 0), null);
    assert.equal(ratio(null, 2), null);
    assert.equal(ratio(2, undefined), null);
  });
});

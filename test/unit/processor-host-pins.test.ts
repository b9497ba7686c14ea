/** ProcessorHost.pins(): what the load reporter sees of the pins hosted on a worker. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProcessorHost } from '../../src/activities/processor-host';
import type { ShardRef } from '../../src/consumer-types';

const ref: ShardRef = { applicationName: 'app', streamName: 'stream', shardId: 'shardId-000000000000' };

test('pins() lists initialized pins with the lease table and owner they were initialized with, and only those', async () => {
  let releaseInit!: () => void;
  const initGate = new Promise<void>((resolve) => (releaseInit = resolve));
  const host = new ProcessorHost({
    p: () => ({ processRecords: async () => undefined }),
    slow: () => ({ processRecords: async () => undefined, initialize: () => initGate }),
  });
  const before = Date.now();
  // A LeaseRef as initializeProcessor passes it: counter and renew are not kept.
  await host.initialize({
    ref,
    processorName: 'p',
    pin: 'owner/1',
    startingPosition: 'TRIM_HORIZON',
    lease: { tableName: 'leases', owner: 'owner', counter: 3, renew: true } as { tableName: string; owner: string },
  });
  const other = { ...ref, shardId: 'shardId-000000000001' };
  await host.initialize({ ref: other, processorName: 'p', pin: 'owner/2', startingPosition: 'TRIM_HORIZON' });
  const slowRef = { ...ref, shardId: 'shardId-000000000002' };
  const slow = host.initialize({ ref: slowRef, processorName: 'slow', pin: 'owner/3', startingPosition: 'LATEST' });

  const pins = host.pins();
  assert.deepEqual(
    pins.map(({ ref: pinRef, pin, lease }) => ({ ref: pinRef, pin, ...(lease ? { lease } : {}) })),
    [
      { ref, pin: 'owner/1', lease: { tableName: 'leases', owner: 'owner' } },
      { ref: other, pin: 'owner/2' },
    ],
    'the initializing pin is not listed yet; the shutdown-only pin has no lease',
  );
  for (const pin of pins) assert.ok(pin.since >= before && pin.since <= Date.now());

  releaseInit();
  await slow;
  assert.deepEqual(
    host.pins().map((pin) => pin.pin),
    ['owner/1', 'owner/2', 'owner/3'],
  );
  await host.shutdown(ref, 'owner/1', { reason: 'ZOMBIE' });
  assert.deepEqual(
    host.pins().map((pin) => pin.pin),
    ['owner/2', 'owner/3'],
  );
});

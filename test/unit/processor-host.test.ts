import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ProcessorHost } from '../../src/activities/processor-host';
import type { ShardRef } from '../../src/consumer-types';
import type { Checkpointer, RecordProcessorFactory, ShutdownReason } from '../../src/record-processor';

const ref: ShardRef = { applicationName: 'app', streamName: 'stream', shardId: 'shardId-000000000000' };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A factory whose instances are numbered; the first instance's shutdown waits until `releaseFirstShutdown` is called. */
function slowFirstShutdown() {
  const shutdowns: { instance: number; reason: ShutdownReason }[] = [];
  let instances = 0;
  let releaseFirstShutdown!: () => void;
  const firstShutdownReleased = new Promise<void>((resolve) => (releaseFirstShutdown = resolve));
  const factory: RecordProcessorFactory = () => {
    const instance = ++instances;
    return {
      processRecords: async () => undefined,
      async shutdown(input) {
        if (instance === 1) await firstShutdownReleased;
        shutdowns.push({ instance, reason: input.reason });
      },
    };
  };
  return { factory, shutdowns, releaseFirstShutdown };
}

describe('ProcessorHost: removing an instance', () => {
  test('shutdown of an older pin does not drop the instance of a newer pin', async () => {
    const { factory, releaseFirstShutdown } = slowFirstShutdown();
    const host = new ProcessorHost({ p: factory });
    await host.initialize({ ref, processorName: 'p', pin: 'owner/1', startingPosition: 'TRIM_HORIZON' });

    // The shutdown of pin 1 is under way (its processor's shutdown is slow) ...
    const shutdown = host.shutdown(ref, 'owner/1', { reason: 'ZOMBIE' });
    await sleep(20);
    // ... meanwhile pin 1 is evicted (idle) and the shard is pinned here again, as pin 2.
    // (Eviction waits for the running shutdown before it calls the processor; it takes the instance off at once.)
    const evicted = host.evictIdle(5);
    await host.initialize({ ref, processorName: 'p', pin: 'owner/2', startingPosition: 'TRIM_HORIZON' });
    assert.equal(host.holds(ref, 'owner/2'), true);

    releaseFirstShutdown();
    await Promise.all([shutdown, evicted]);
    assert.equal(host.holds(ref, 'owner/2'), true, 'the newer pin still holds the shard after the older one shut down');
    assert.equal(host.size, 1);
  });

  test('an instance shut down is not shut down again when it is evicted', async () => {
    const { factory, shutdowns, releaseFirstShutdown } = slowFirstShutdown();
    const host = new ProcessorHost({ p: factory });
    await host.initialize({ ref, processorName: 'p', pin: 'owner/1', startingPosition: 'TRIM_HORIZON' });
    const shutdown = host.shutdown(ref, 'owner/1', { reason: 'ZOMBIE' });
    await sleep(20);
    // A new pin arrives while the old one shuts down: initialize evicts the old instance, after its shutdown.
    const initialized = host.initialize({ ref, processorName: 'p', pin: 'owner/2', startingPosition: 'TRIM_HORIZON' });
    releaseFirstShutdown();
    await Promise.all([shutdown, initialized]);
    assert.deepEqual(
      shutdowns.filter((s) => s.instance === 1),
      [{ instance: 1, reason: 'ZOMBIE' }],
      'instance 1 gets exactly one shutdown call',
    );
    assert.equal(host.holds(ref, 'owner/2'), true);
  });

  test('a shutdown that threw is called again when the attempt is retried', async () => {
    let calls = 0;
    const host = new ProcessorHost({
      p: () => ({
        processRecords: async () => undefined,
        shutdown: () => {
          calls++;
          if (calls === 1) throw new Error('transient');
        },
      }),
    });
    await host.initialize({ ref, processorName: 'p', pin: 'owner/1', startingPosition: 'TRIM_HORIZON' });
    await assert.rejects(host.shutdown(ref, 'owner/1', { reason: 'ZOMBIE' }), /transient/);
    await host.shutdown(ref, 'owner/1', { reason: 'ZOMBIE' });
    assert.equal(calls, 2);
    assert.equal(host.size, 0);
  });

  test('evictIdle asks whether an idle shard is still pinned here: yes keeps it, no evicts it, an error keeps it', async () => {
    const reasons: string[] = [];
    const host = new ProcessorHost({
      p: () => ({ processRecords: async () => undefined, shutdown: (input) => void reasons.push(input.reason) }),
    });
    const other: ShardRef = { ...ref, shardId: 'shardId-000000000001' };
    const third: ShardRef = { ...ref, shardId: 'shardId-000000000002' };
    for (const shard of [ref, other, third]) {
      await host.initialize({ ref: shard, processorName: 'p', pin: 'owner/1', startingPosition: 'TRIM_HORIZON' });
    }
    await sleep(10);
    const asked: string[] = [];
    const evicted = await host.evictIdle(5, async (shard) => {
      asked.push(shard.shardId);
      if (shard.shardId === third.shardId) throw new Error('query failed');
      return shard.shardId === ref.shardId;
    });
    assert.equal(evicted, 1);
    assert.deepEqual(asked.sort(), [ref.shardId, other.shardId, third.shardId]);
    assert.equal(host.holds(ref, 'owner/1'), true, 'still pinned here: kept');
    assert.equal(host.holds(other, 'owner/1'), false, 'pinned elsewhere: evicted');
    assert.equal(host.holds(third, 'owner/1'), true, 'unknown: kept for the next sweep');
    assert.deepEqual(reasons, ['ZOMBIE']);
    // Kept instances count as used now: not asked about again before another idle period.
    assert.equal(await host.evictIdle(1_000, () => Promise.resolve(false)), 0);
  });

  test('a retried initialize of a new pin, while the old instance still shuts down, creates one instance, not two', async () => {
    const { factory, shutdowns, releaseFirstShutdown } = slowFirstShutdown();
    let created = 0;
    const counting: typeof factory = (context) => {
      created++;
      return factory(context);
    };
    const host = new ProcessorHost({ p: counting });
    await host.initialize({ ref, processorName: 'p', pin: 'owner/1', startingPosition: 'TRIM_HORIZON' });
    // Pin 2 arrives while pin 1 shuts down slowly; the activity attempt is retried meanwhile (same pin).
    const first = host.initialize({ ref, processorName: 'p', pin: 'owner/2', startingPosition: 'TRIM_HORIZON' });
    await sleep(10);
    const retried = host.initialize({ ref, processorName: 'p', pin: 'owner/2', startingPosition: 'TRIM_HORIZON' });
    await sleep(10);
    releaseFirstShutdown();
    await Promise.all([first, retried]);
    await host.drain();
    assert.equal(created, 2, 'instances created: pin 1 and one for pin 2');
    assert.deepEqual(
      shutdowns.map((s) => s.instance).sort(),
      [1, 2],
      'every instance created is shut down exactly once',
    );
  });
});

describe('ProcessorHost: maxShards and draining', () => {
  const shard = (n: number): ShardRef => ({ ...ref, shardId: `shardId-${String(n).padStart(12, '0')}` });
  const slowInit: RecordProcessorFactory = () => ({
    initialize: async () => {
      await sleep(20);
    },
    processRecords: async () => undefined,
  });

  test('a shard beyond maxShards is refused FULL, even when initializations run concurrently; a re-pin is not counted twice', async () => {
    const host = new ProcessorHost({ p: slowInit }, { maxShards: 2 });
    const results = await Promise.allSettled(
      [1, 2, 3, 4].map((n) =>
        host.initialize({ ref: shard(n), processorName: 'p', pin: `o${n}/1`, startingPosition: 'TRIM_HORIZON' }),
      ),
    );
    assert.deepEqual(
      results.map((r) => r.status),
      ['fulfilled', 'fulfilled', 'rejected', 'rejected'],
    );
    const refusal = (results[2] as PromiseRejectedResult).reason as { refusal?: string; message: string };
    assert.equal(refusal.refusal, 'FULL');
    assert.match(refusal.message, /--max-shards 2/);
    assert.equal(host.holding, 2);
    // A new pin of a shard held here replaces its instance: still 2.
    await host.initialize({ ref: shard(1), processorName: 'p', pin: 'o1/2', startingPosition: 'TRIM_HORIZON' });
    assert.equal(host.holding, 2);
    // An instance only for a shutdown call may go beyond the cap, and does not count.
    await host.initialize({
      ref: shard(5),
      processorName: 'p',
      pin: 'o5/1/shutdown',
      startingPosition: 'TRIM_HORIZON',
      transient: true,
    });
    assert.equal(host.holding, 2);
    assert.equal(host.size, 3);
    // Room again once a shard leaves.
    await host.shutdown(shard(2), 'o2/1', { reason: 'ZOMBIE' });
    await host.initialize({ ref: shard(3), processorName: 'p', pin: 'o3/2', startingPosition: 'TRIM_HORIZON' });
    assert.equal(host.holds(shard(3), 'o3/2'), true);
  });

  test('beginDrain refuses new shards and new calls, ends the pins’ waits, and still runs shutdown(REQUESTED)', async () => {
    const reasons: ShutdownReason[] = [];
    const host = new ProcessorHost({
      p: () => ({ processRecords: async () => undefined, shutdown: async (input) => void reasons.push(input.reason) }),
    });
    await host.initialize({ ref, processorName: 'p', pin: 'o/1', startingPosition: 'TRIM_HORIZON' });
    const wait = host.stopSignal(ref, 'o/1');
    assert.equal(wait.aborted, false);
    host.beginDrain();
    assert.equal(wait.aborted, true, 'a quiet read or window of the pin ends at once');
    await assert.rejects(
      host.initialize({ ref: shard(9), processorName: 'p', pin: 'x/1', startingPosition: 'TRIM_HORIZON' }),
      { refusal: 'DRAINING' },
    );
    await assert.rejects(
      host.process(ref, 'o/1', 'h', async () => undefined),
      { refusal: 'DRAINING' },
    );
    // (The host passes the checkpointer through; this processor does not use it.)
    await host.shutdown(ref, 'o/1', { reason: 'REQUESTED', checkpointer: {} as Checkpointer });
    assert.deepEqual(reasons, ['REQUESTED']);
    assert.equal(host.size, 0);
  });
});

/**
 * The fleet view (issue 10 §2, §3): workers report the load of the shards pinned to them into the lease items, and
 * `describeFleet` / `watchFleet` combine those reports with the pollers of the shared task queue. Against the real
 * stack: real workers, a real lease table.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MockActivityEnvironment } from '@temporalio/testing';
import { CancelledFailure } from '@temporalio/common';
import { createFleetActivities, describeFleet, type WatchFleetInput } from '../../src/activities/fleet-activities';
import { isLive } from '../../src/placement';
import { startLoadReporter } from '../../src/activities/load-reporter';
import { ProcessorHost } from '../../src/activities/processor-host';
import { ShardLoadMeter } from '../../src/activities/shard-load';
import { CheckpointTable } from '../../src/checkpoint/checkpoint-table';
import { A } from '../../src/checkpoint/lease-item';
import type { FleetView } from '../../src/fleet-types';
import { stopSignal } from '../../src/workflows/shard-consumer';
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import {
  createStream,
  kclTestContextForSuite,
  listShards,
  putRecords,
  recordingProcessor,
  startShardConsumer,
  testWorker,
} from '../helpers/kcl';
import { uniqueName } from '../helpers/stack';
import { killAllWorkerProcesses, startWorkerProcess, type WorkerProcess } from '../helpers/child-worker';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(200);
  }
}

describe('fleet view: load reports, describeFleet, watchFleet', () => {
  const context = kclTestContextForSuite({ beforeClose: killAllWorkerProcesses });
  const fleet = () => ({ client: context.client, dynamoDb: context.dynamoDb });

  test('a worker reports its shards (worker, KB/s, records/s) and the snapshot lists it with its queue', async () => {
    // Prepare: a 2-shard stream with records on both, one worker reporting every second
    const streamName = await createStream(context.kinesis, 2, 'fleet');
    const shardIds = (await listShards(context.kinesis, streamName)).map((shard) => shard.ShardId ?? '');
    const taskQueue = uniqueName('tq');
    const applicationName = uniqueName('app');
    const { factory } = recordingProcessor();
    const worker = await testWorker(context, {
      processors: { recorder: factory },
      taskQueue,
      loadReportIntervalMs: 1_000,
    });
    const records = Array.from({ length: 40 }, (_, i) => ({
      partitionKey: `k${i}`,
      data: 'x'.repeat(1_000),
    }));
    await putRecords(context.kinesis, streamName, records);
    const table = new CheckpointTable({ dynamoDb: context.dynamoDb, tableName: applicationName });

    const view = await worker.runUntil(
      (async () => {
        const handles = await Promise.all(
          shardIds.map((shardId) =>
            startShardConsumer(context, {
              taskQueue,
              applicationName,
              streamName,
              shardId,
              processor: 'recorder',
              options: { initialPosition: 'TRIM_HORIZON', idleTimeBetweenReadsMs: 200 },
            }),
          ),
        );
        // Act: wait until both lease items carry a measured load from this worker
        const reports = await until('load reports of both shards', async () => {
          const leases = await table.listLeaseReports().catch(() => []);
          const reported = leases.filter(
            (lease) => lease.report.worker === worker.workerQueue && (lease.report.kbps ?? 0) > 0,
          );
          return reported.length === shardIds.length ? leases : undefined;
        });
        const snapshot = await describeFleet(fleet(), { taskQueue, tableName: applicationName });
        await Promise.all(handles.map((handle) => handle.signal(stopSignal)));
        await Promise.all(handles.map((handle) => handle.result()));
        return { snapshot, reports };
      })(),
    );

    // Assess: the worker polls the shared queue under its identity; each shard names it, with a load
    const { snapshot, reports } = view;
    const me = snapshot.workers.find((w) => w.identity === worker.identity);
    assert.ok(me, `worker ${worker.identity} in ${JSON.stringify(snapshot.workers)}`);
    assert.equal(me.workerQueue, worker.workerQueue);
    assert.ok(isLive(me, snapshot.at), `last poll ${snapshot.at - me.lastAccessTime} ms ago`);
    assert.equal(me.maxShards, undefined, 'no cap reported');
    assert.deepEqual(snapshot.shards.map((shard) => shard.shardId).sort(), [...shardIds].sort());
    for (const shard of snapshot.shards) {
      assert.equal(shard.worker, worker.workerQueue, `worker of ${shard.shardId}`);
      assert.equal(shard.ended, false);
      assert.ok((shard.kbps ?? 0) > 0, `kbps of ${shard.shardId}: ${shard.kbps}`);
      assert.ok((shard.recordsPerSec ?? 0) > 0, `records/s of ${shard.shardId}: ${shard.recordsPerSec}`);
      assert.ok(shard.reportedAt !== undefined && snapshot.at - shard.reportedAt < 10_000);
    }
    // Java KCL's view of the same items: the leases still parse, with their owners and checkpoints.
    for (const lease of reports) assert.ok(lease.owner?.startsWith('temporal-kcl/'), `owner of ${lease.shardId}`);
    console.log(
      `reported: ${snapshot.shards
        .map((s) => `${s.shardId} ${s.kbps?.toFixed(2)} KB/s ${s.recordsPerSec?.toFixed(2)} rec/s`)
        .join('; ')}`,
    );
  });

  test('watchFleet returns when a second worker starts, when a shard changes worker, after maxWaitMs, and when cancelled', async () => {
    // Prepare: a lease table with two leases reported on worker A; worker A polling
    const taskQueue = uniqueName('tq');
    const tableName = uniqueName('fleet');
    const table = new CheckpointTable({ dynamoDb: context.dynamoDb, tableName });
    await table.ensureTable();
    for (const shardId of ['shardId-000000000000', 'shardId-000000000001']) {
      await table.claim({ shardId, owner: `owner-${shardId}` });
    }
    const { factory } = recordingProcessor();
    const workerA = await testWorker(context, { processors: { recorder: factory }, taskQueue });
    // A second worker in this process would share its Temporal runtime, which refuses two workers on one queue.
    const outputDir = mkdtempSync(join(tmpdir(), 'fleet-'));
    let workerB: WorkerProcess | undefined;
    for (const shardId of ['shardId-000000000000', 'shardId-000000000001']) {
      await table.report({
        shardId,
        owner: `owner-${shardId}`,
        worker: workerA.workerQueue,
        kbps: 1,
        recordsPerSec: 2,
      });
    }
    const activities = createFleetActivities(fleet());
    const watch = (env: MockActivityEnvironment, known: FleetView | undefined, maxWaitMs = 60_000) =>
      env.run<[WatchFleetInput], FleetView, (input: WatchFleetInput) => Promise<FleetView>>(
        (input) => activities.watchFleet(input),
        { taskQueue, tableName, ...(known ? { known } : {}), maxWaitMs },
      );
    const queues = (view: FleetView) => view.workers.map((w) => w.workerQueue).sort();

    const runA = workerA.run();
    try {
      // Without `known`: a snapshot at once
      const first = await until('worker A polling', async () => {
        const view = await watch(new MockActivityEnvironment(), undefined);
        return view.workers.some((w) => w.identity === workerA.identity) ? view : undefined;
      });
      assert.deepEqual(queues(first), [workerA.workerQueue]);
      assert.deepEqual(
        first.shards.map((s) => [s.shardId, s.worker, s.kbps, s.recordsPerSec]),
        [
          ['shardId-000000000000', workerA.workerQueue, 1, 2],
          ['shardId-000000000001', workerA.workerQueue, 1, 2],
        ],
      );

      // Act 1: nothing changes for 3 s, then worker B starts
      const started = Date.now();
      const joined = watch(new MockActivityEnvironment(), first);
      const early = await Promise.race([joined.then(() => 'returned'), sleep(3_000).then(() => 'waiting')]);
      assert.equal(early, 'waiting', 'nothing changed: the watch keeps waiting');
      const startB = Date.now();
      workerB = await startWorkerProcess(context, {
        taskQueue,
        outputFile: join(outputDir, 'b.jsonl'),
        checkpoint: { mode: 'none' },
      });
      const readyAt = Date.now();
      const afterJoin = await joined;
      const joinSeenMs = Date.now() - readyAt;
      assert.deepEqual(queues(afterJoin), [workerA.workerQueue, workerB.workerQueue].sort());
      assert.ok(joinSeenMs < 5_000, `join seen ${joinSeenMs} ms after the process was ready (polls every 2 s)`);

      // Act 2: a shard's worker changes (B's report)
      const moved = watch(new MockActivityEnvironment(), afterJoin);
      await sleep(500);
      const moveAt = Date.now();
      await table.report({
        shardId: 'shardId-000000000001',
        owner: 'owner-shardId-000000000001',
        worker: workerB.workerQueue,
        maxShards: 3,
      });
      const afterMove = await moved;
      const moveSeenMs = Date.now() - moveAt;
      const shard1 = afterMove.shards.find((s) => s.shardId === 'shardId-000000000001');
      assert.equal(shard1?.worker, workerB.workerQueue);
      assert.equal(shard1?.kbps, 1, 'a report without a measured load keeps the stored one');
      assert.equal(afterMove.workers.find((w) => w.workerQueue === workerB?.workerQueue)?.maxShards, 3);
      assert.equal(afterMove.workers.find((w) => w.workerQueue === workerA.workerQueue)?.maxShards, undefined);
      assert.ok(moveSeenMs <= 13_000, `move seen after ${moveSeenMs} ms (scan every 10 s)`);

      // Act 3: nothing changes: returns after maxWaitMs with the same view
      const quietStart = Date.now();
      const quiet = await watch(new MockActivityEnvironment(), afterMove, 2_500);
      const quietMs = Date.now() - quietStart;
      assert.ok(quietMs >= 2_400 && quietMs < 6_000, `returned after ${quietMs} ms`);
      assert.deepEqual(queues(quiet), queues(afterMove));

      // Act 4: cancelled: rejects promptly with the cancellation
      const env = new MockActivityEnvironment();
      const cancelled = watch(env, afterMove);
      await sleep(300);
      const cancelAt = Date.now();
      env.cancel();
      await assert.rejects(cancelled, (error: unknown) => error instanceof CancelledFailure);
      const cancelMs = Date.now() - cancelAt;
      assert.ok(cancelMs < 1_000, `ended ${cancelMs} ms after the cancellation`);
      console.log(
        `first watch waited ${startB - started} ms; worker B ready after ${readyAt - startB} ms, join seen ${joinSeenMs} ms later, move after ${moveSeenMs} ms, ` +
          `maxWait 2500 -> ${quietMs} ms, cancel -> ${cancelMs} ms`,
      );
    } finally {
      await killAllWorkerProcesses();
      await workerA.shutdown();
      await runA.catch(() => undefined);
    }
  });

  test('the reporter writes the load of hosted pins soon after they arrive, then stops on a lost lease; the counter never moves', async () => {
    // Prepare: a single-stream and a multi-stream table, a lease in each, a host holding both pins
    const tableName = uniqueName('reports');
    const multiName = uniqueName('multi');
    const streamIdentifier = '123456789012:orders:1700000000';
    const single = new CheckpointTable({ dynamoDb: context.dynamoDb, tableName });
    const multi = new CheckpointTable({ dynamoDb: context.dynamoDb, tableName: multiName, streamIdentifier });
    await Promise.all([single.ensureTable(), multi.ensureTable()]);
    const shardId = 'shardId-000000000007';
    const owner = 'temporal-kcl/app/orders/shardId-000000000007#run';
    const claimed = await single.claim({ shardId, owner });
    const claimedMulti = await multi.claim({ shardId, owner });
    const host = new ProcessorHost({ p: () => ({ processRecords: async () => undefined }) });
    const ref = { applicationName: 'app', streamName: 'orders', shardId };
    const multiRef = { ...ref, streamName: 'orders-multi', streamIdentifier };
    await host.initialize({
      ref,
      processorName: 'p',
      pin: `${owner}/1`,
      startingPosition: 'TRIM_HORIZON',
      lease: { tableName, owner },
    });
    await host.initialize({
      ref: multiRef,
      processorName: 'p',
      pin: `${owner}/1`,
      startingPosition: 'TRIM_HORIZON',
      lease: { tableName: multiName, owner },
    });
    const meter = new ShardLoadMeter();
    const errors: unknown[] = [];
    const started = Date.now();
    const reporter = startLoadReporter({
      dynamoDb: context.dynamoDb,
      host,
      meter,
      workerQueue: 'tq@me',
      maxShards: 4,
      intervalMs: 1_000,
      onError: (_, error) => errors.push(error),
    });
    const raw = async (name: string, key: string) =>
      (
        await context.dynamoDb.send(
          new GetItemCommand({ TableName: name, Key: { [A.leaseKey]: { S: key } }, ConsistentRead: true }),
        )
      ).Item ?? {};
    try {
      // Act 1: the new pins are reported within a second or so, before any load is measured
      const firstReport = await until(
        'first report',
        async () => {
          const item = await raw(tableName, shardId);
          return item[A.temporalKclWorker] ? item : undefined;
        },
        5_000,
      );
      const firstMs = Date.now() - started;
      assert.equal(firstReport[A.temporalKclWorker]?.S, 'tq@me');
      assert.equal(firstReport[A.temporalKclMaxShards]?.N, '4');
      assert.equal(firstReport[A.throughputKBps], undefined, 'no load measured yet: not written');
      assert.ok(firstMs < 2_500, `first report after ${firstMs} ms`);

      // Act 2: load arrives; the next reports carry it (numbers Java KCL 3.x reads as a Double)
      for (let i = 0; i < 5; i++) {
        meter.add(ref, `${owner}/1`, 10 * 1024, 20);
        meter.add(multiRef, `${owner}/1`, 2 * 1024, 4);
        await sleep(300);
      }
      const loaded = await until(
        'a report with load',
        async () => {
          const item = await raw(tableName, shardId);
          return item[A.throughputKBps] ? item : undefined;
        },
        5_000,
      );
      const kbps = Number(loaded[A.throughputKBps]?.N);
      assert.ok(kbps > 0 && Number.isFinite(kbps), `throughputKBps ${loaded[A.throughputKBps]?.N}`);
      assert.ok(Number(loaded[A.temporalKclRecordsPerSec]?.N) > 0);
      assert.ok(Math.abs(Number(loaded[A.temporalKclReportedAt]?.N) - Date.now()) < 5_000);
      const multiItem = await until(
        'the multi-stream report',
        async () => {
          const item = await raw(multiName, `${streamIdentifier}:${shardId}`);
          return item[A.throughputKBps] ? item : undefined;
        },
        5_000,
      );
      assert.equal(multiItem[A.temporalKclWorker]?.S, 'tq@me');
      assert.equal(multiItem[A.streamName]?.S, streamIdentifier);
      // The leases are untouched: counters as claimed, and they still parse
      assert.equal((await single.getLease(shardId))?.counter, claimed.counter);
      assert.equal((await multi.getLease(shardId))?.counter, claimedMulti.counter);
      assert.equal((await multi.listLeaseReports())[0]?.report.worker, 'tq@me');

      // Act 3: another owner takes the single-stream lease; its reports stop, the multi-stream one goes on
      const taken = await single.claim({ shardId, owner: 'someone-else' });
      const takenItem = await raw(tableName, shardId);
      const reportsBefore = reporter.stats.reports;
      await sleep(3_000);
      const after = await raw(tableName, shardId);
      assert.equal(reporter.stats.lost, 1);
      assert.deepEqual(after, takenItem, 'nothing written after the lease was lost');
      assert.equal((await single.getLease(shardId))?.counter, taken.counter);
      assert.ok(reporter.stats.reports > reportsBefore, 'the other pin is still reported');

      // Act 4: the owner releases the multi-stream lease: the report goes with it (KCL's throughputKBps stays) and
      // the reporter does not write it back
      assert.ok(await multi.release({ shardId, owner, counter: claimedMulti.counter }));
      await sleep(2_500);
      const released = await raw(multiName, `${streamIdentifier}:${shardId}`);
      assert.equal(released[A.leaseOwner], undefined);
      for (const attribute of [
        A.temporalKclWorker,
        A.temporalKclMaxShards,
        A.temporalKclRecordsPerSec,
        A.temporalKclReportedAt,
      ]) {
        assert.equal(released[attribute], undefined, `${attribute} after the release`);
      }
      assert.ok(Number(released[A.throughputKBps]?.N) > 0, 'the last known load stays');
      assert.equal(reporter.stats.lost, 2);
      assert.deepEqual(errors, []);
    } finally {
      await reporter.stop();
    }
  });
});

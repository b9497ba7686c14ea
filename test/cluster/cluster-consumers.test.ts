/**
 * temporal-kcl on a real Temporal cluster (`npm run test:cluster`: PostgreSQL, history, matching, frontend and worker as
 * separate processes), with `temporal-kcl worker` processes and `temporal-kcl start` as users run them, while a producer
 * keeps putting numbered records per partition key (plain and KPL-aggregated):
 * - a 4-shard stream is split and merged while 3 workers consume, and workers are SIGKILLed (and started again);
 * - the history service, then the matching service, are SIGKILLed and started again in the middle of consumption, then
 *   the frontend while `temporal-kcl status --watch` runs (it must keep going and show fresh progress).
 * Checked from the delivery log (test/helpers/delivery-log.ts): nothing lost; per-key order; duplicates only from the
 * batch in flight at a kill (of a worker, or of a Temporal service); every shard consumer running until stopped, or
 * ended at its shard's end, with the right final checkpoint.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MergeShardsCommand, type Shard, SplitShardCommand } from '@aws-sdk/client-kinesis';
import type { ClusterService } from '../../src/dev/cluster';
import { type CliProcess, killAllCliProcesses, spawnCli } from '../helpers/cli';
import { restartClusterService } from '../helpers/cluster-control';
import { assertGuarantees, byStart, ClusterRun, endKey, isOpen, SEED, sleep, startKey } from '../helpers/cluster-run';
import { kclTestContextForSuite, listShards, waitUntilActive } from '../helpers/kcl';
import { seededRandom } from '../helpers/keyed-producer';

describe('temporal-kcl on a real Temporal cluster (4 services on PostgreSQL)', () => {
  const context = kclTestContextForSuite({ beforeClose: killAllCliProcesses });

  test('split and merge while 3 worker processes consume, with SIGKILLs of workers', async (t) => {
    // Prepare
    const run = new ClusterRun(context, 'reshard');
    const { kinesis } = context;
    const random = seededRandom(SEED ^ 0x2545f491);
    let toSplit: Shard | undefined;
    let splitAt = 0n;
    await run.createStream((shards) => {
      toSplit = shards[Math.floor(random() * shards.length)]!;
      splitAt = (startKey(toSplit) + endKey(toSplit) + 1n) / 2n;
      return splitAt;
    });
    run.log(`seed ${SEED} (replay: CLUSTER_SEED=${SEED}); deliveries in ${run.deliveryLog}`);
    try {
      await Promise.all([run.addWorker(), run.addWorker(), run.addWorker()]);
      await run.start();

      // Act: produce; kill a worker, split, kill, merge, kill.
      run.producer!.start();
      await sleep(3_000);
      await run.killAndReplaceWorker();
      await kinesis.send(
        new SplitShardCommand({
          StreamName: run.streamName,
          ShardToSplit: toSplit!.ShardId!,
          NewStartingHashKey: splitAt.toString(),
        }),
      );
      await waitUntilActive(kinesis, run.streamName, 400);
      run.log(`split ${toSplit!.ShardId}`);
      await sleep(2_000);
      await run.killAndReplaceWorker();
      const open = (await listShards(kinesis, run.streamName))
        .filter((shard) => isOpen(shard) && !shard.ParentShardId)
        .sort(byStart);
      const pairs = open.flatMap((shard, i) => {
        const next = open[i + 1];
        return next && endKey(shard) + 1n === startKey(next) ? [[shard, next] as const] : [];
      });
      const [lower, upper] = pairs[Math.floor(random() * pairs.length)]!;
      await kinesis.send(
        new MergeShardsCommand({
          StreamName: run.streamName,
          ShardToMerge: lower.ShardId!,
          AdjacentShardToMerge: upper.ShardId!,
        }),
      );
      await waitUntilActive(kinesis, run.streamName, 400);
      run.log(`merged ${lower.ShardId} and ${upper.ShardId}`);
      await sleep(2_000);
      await run.killAndReplaceWorker();
      await sleep(2_000);
      await run.producer!.stop();
      run.log(`stopped producing: ${run.producer!.produced.size} user records`);
      const drainMs = await run.drain();

      // Assess
      const { report, result, shards } = await run.finish();
      const { figures } = report;
      const recovery = figures.kills.map((kill) => {
        const times = Object.values(kill.recoveryMs);
        return `${kill.shards.length} shards, ${kill.redelivered} re-delivered (last batches ${kill.lastBatches}), recovered in ${times.length > 0 ? Math.max(...times) : '-'} ms`;
      });
      t.diagnostic(
        `${figures.produced} records (${run.producer!.kinesisRecords} Kinesis records, ${run.producer!.aggregates} aggregates), ` +
          `${figures.deliveries} deliveries, ${figures.duplicates} duplicates (bound ${figures.duplicateBound}), drain ${drainMs} ms; ` +
          `kills: ${recovery.join('; ')}`,
      );
      assertGuarantees(report);
      assert.equal(figures.kills.length, 3);
      assert.ok(figures.duplicates <= figures.duplicateBound);
      assert.equal(shards.length, 7, 'four shards, two split children, one merge child');
      assert.equal(result!.started, 7);
      assert.deepEqual(
        result!.ended,
        { TERMINATE: 3, REQUESTED: 4 },
        'parents ended at shard end, the rest on request',
      );
      for (const worker of await run.stopWorkers()) {
        assert.deepEqual(worker.exit, { code: 0, signal: null }, `worker ${worker.pid} stops gracefully`);
        assert.ok(worker.ms < 20_000, `worker ${worker.pid} stopped within its 20 s grace (${worker.ms} ms)`);
      }
    } finally {
      await run.close();
    }
  });

  test('history, then matching restarted mid-consumption; frontend restarted under status --watch', async (t) => {
    // Prepare
    const run = new ClusterRun(context, 'services');
    await run.createStream();
    const restarts: {
      service: ClusterService;
      at: number;
      upAt: number;
      downMs: number;
      upMs: number;
      freshMs: number;
    }[] = [];
    let watch: CliProcess | undefined;
    const watchMs: number[] = [];
    try {
      await Promise.all([run.addWorker(), run.addWorker()]);
      await run.start();
      watch = spawnCli(
        [
          'status',
          '--app',
          run.applicationName,
          '--stream',
          run.streamName,
          '--watch',
          '--json',
          '--interval',
          '500ms',
        ],
        run.env,
      );
      await watch.waitFor(/"shards"/, 30_000);

      const jsonLines = () =>
        watch!
          .stdout()
          .split('\n')
          .filter((line) => line.startsWith('{'));
      let watchLinesAtUp = 0;

      // Act: restart one service at a time while records flow; each time, wait until records put after it are delivered.
      run.producer!.start();
      for (const service of ['history', 'matching', 'frontend'] as const) {
        await sleep(3_000);
        const at = Date.now();
        const { downMs, upMs } = await restartClusterService(service, 'SIGKILL');
        const upAt = Date.now();
        watchLinesAtUp = jsonLines().length;
        const freshMs = await run.untilFreshDelivery(at);
        restarts.push({ service, at, upAt, downMs, upMs, freshMs });
        run.log(
          `${service}: SIGKILL, serving again after ${upMs} ms; a fresh record delivered ${freshMs} ms after the kill`,
        );
      }
      // status --watch kept going through the frontend's restart: still running, fresh lines after the frontend came back.
      const frontend = restarts.at(-1)!;
      for (const deadline = frontend.upAt + 20_000; jsonLines().length < watchLinesAtUp + 2; await sleep(50)) {
        if (watchMs.length === 0 && jsonLines().length > watchLinesAtUp) watchMs.push(Date.now() - frontend.at);
        assert.ok(
          Date.now() < deadline,
          `status --watch printed no fresh status within 20 s of the frontend's restart:\n${watch.stderr()}`,
        );
      }
      watchMs.push(Date.now() - frontend.at);
      const watchLines = jsonLines();
      const latest = JSON.parse(watchLines.at(-1)!) as { shards: { shardId: string; state: string }[] };
      assert.equal(latest.shards.length, 4);
      assert.deepEqual(
        [...new Set(latest.shards.map((shard) => shard.state))],
        ['PROCESSING'],
        `every shard PROCESSING after the restarts: ${watchLines.at(-1)}`,
      );
      await sleep(1_000);
      await run.producer!.stop();
      run.log(`stopped producing: ${run.producer!.produced.size} user records`);
      const drainMs = await run.drain();
      const watchStopping = Date.now();
      const stopped = await watch.kill('SIGINT');
      run.log(`status --watch ended ${Date.now() - watchStopping} ms after SIGINT`);
      assert.deepEqual(stopped, { code: 0, signal: null }, 'status --watch ends cleanly on Ctrl-C');

      // Assess
      const { report, result, lines } = await run.finish();
      // No worker was killed: a duplicate is allowed only from the batch each delivery run had last started when a
      // service went down (the one in flight, or done but its completion not yet recorded, so its activity may run
      // again), at most that batch per run per restart.
      const batches = new Map<string, { instance: string; start: number; count: number }>();
      for (const line of lines) {
        if (line.kind === 'batch')
          batches.set(line.batch, { instance: line.instance, start: line.at, count: line.count });
      }
      const inFlightAtRestart = new Set<string>();
      for (const restart of restarts) {
        const lastByRun = new Map<string, string>();
        for (const [batch, b] of batches) if (b.start <= restart.upAt) lastByRun.set(b.instance, batch);
        for (const batch of lastByRun.values()) inFlightAtRestart.add(batch);
      }
      const inFlight = (batch: string) => inFlightAtRestart.has(batch);
      const allowed = (violation: string) => {
        const batch = / in batch (\S+): that worker was not killed in between$/.exec(violation)?.[1];
        return batch !== undefined && inFlight(batch);
      };
      const { figures } = report;
      const bound = [...inFlightAtRestart].reduce((sum, batch) => sum + (batches.get(batch)?.count ?? 0), 0);
      t.diagnostic(
        `${figures.produced} records, ${figures.deliveries} deliveries, ${figures.duplicates} duplicates (bound ${bound}: batches in flight at a restart), drain ${drainMs} ms; ` +
          restarts
            .map(
              (r) => `${r.service} down ${r.downMs} ms, up ${r.upMs} ms, fresh delivery ${r.freshMs} ms after the kill`,
            )
            .join('; ') +
          `; status --watch: fresh statuses ${watchMs.join(' and ')} ms after the frontend's kill`,
      );
      assertGuarantees(report, allowed);
      assert.ok(figures.duplicates <= bound, `${figures.duplicates} duplicates, bound ${bound}`);
      assert.equal(result!.started, 4);
      assert.deepEqual(result!.ended, { REQUESTED: 4 }, 'every shard consumer ran until it was stopped');
      for (const worker of await run.stopWorkers()) {
        assert.deepEqual(worker.exit, { code: 0, signal: null }, `worker ${worker.pid} stops gracefully`);
        assert.ok(worker.ms < 20_000, `worker ${worker.pid} stopped within its 20 s grace (${worker.ms} ms)`);
      }
      assert.equal(frontend.service, 'frontend');
    } finally {
      await watch?.kill('SIGKILL').catch(() => undefined);
      await run.close();
    }
  });
});

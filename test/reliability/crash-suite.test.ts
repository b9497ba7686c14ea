/**
 * The crash suite: a 4-shard stream (kinesis-local) of plain and KPL-aggregated records, consumed by a
 * StreamConsumerWorkflow on two worker processes (test/fixtures/worker-process.ts, checkpointing every batch), while a
 * producer keeps putting numbered records per partition key, one shard is split and two adjacent shards merge, and
 * worker processes are SIGKILLed at random moments (some in the middle of a slow batch) and restarted.
 *
 * Then it checks the delivery log (test/helpers/delivery-log.ts): no record lost; every duplicate's previous delivery
 * was by a worker later killed, in the last batch its processor received, beyond every checkpoint the lease table showed
 * durable before the kill (so at most one batch per shard per kill); per partition key, order within each delivery run
 * and across parent and child shards; checkpoints never go back.
 *
 * The moments are drawn from a seeded generator: `CRASH_SEED=<seed>` replays a run's choices (timing still varies).
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { MergeShardsCommand, type Shard, SplitShardCommand } from '@aws-sdk/client-kinesis';
import { CheckpointTable } from '../../src/checkpoint/checkpoint-table';
import { getStreamProgress, startStreamConsumer, stopStreamConsumer } from '../../src/client/consumers';
import { formatPosition } from '../../src/positions';
import type { WorkerProcessLine } from '../fixtures/worker-process';
import { killAllWorkerProcesses, startWorkerProcess, type WorkerProcess } from '../helpers/child-worker';
import { checkDeliveries, type Kill, lastDeliveredByShard } from '../helpers/delivery-log';
import { readJsonLines } from '../helpers/json-lines';
import { timeoutsIn } from '../helpers/history-timeouts';
import { createStream, kclTestContextForSuite, listShards, waitUntilActive } from '../helpers/kcl';
import { KeyedProducer, seededRandom } from '../helpers/keyed-producer';
import { OutputTail, pollLeases } from '../helpers/run-watch';
import { uniqueName } from '../helpers/stack';

const SEED = Number(process.env.CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
/** Producing lasts at least this long, and until MIN_KILLS kills. */
const PRODUCE_MS = 45_000;
const MIN_KILLS = 6;
/** These kills (0-based) wait for a slow batch and hit it in the middle. */
const MID_BATCH_KILLS = new Set([1, 3]);
const KILL_INTERVAL_MS = [3_000, 7_000] as const;
const RESTART_DELAY_MS = [200, 2_500] as const;
const SPLIT_AT_MS = 10_000;
const MERGE_AT_MS = 22_000;
const DRAIN_TIMEOUT_MS = 90_000;
const SLOW_BATCHES = { every: 12, ms: 1_500 };
/** A worker is killed only once it has been up this long (so it holds shards). */
const MIN_UPTIME_MS = 3_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** Settles with `promise`, or rejects with `message` after `ms` (the timer never holds the process open). */
async function within<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
const settled = async (pending: (Promise<void> | undefined)[]) => {
  for (const promise of pending) await promise;
};
const startKey = (shard: Shard) => BigInt(shard.HashKeyRange?.StartingHashKey ?? '-1');
const endKey = (shard: Shard) => BigInt(shard.HashKeyRange?.EndingHashKey ?? '-1');
const isOpen = (shard: Shard) => shard.SequenceNumberRange?.EndingSequenceNumber === undefined;

describe('crash suite: SIGKILLed workers while producing and resharding', () => {
  const context = kclTestContextForSuite({ beforeClose: killAllWorkerProcesses });

  test('no record lost; duplicates only from the batch in flight at a kill; order per key kept', async () => {
    // Prepare
    // Two streams from the seed: the producer's draws do not shift the kill schedule's (and the other way round).
    const random = seededRandom(SEED);
    const produceRandom = seededRandom(SEED ^ 0x5bd1e995);
    const between = ([low, high]: readonly [number, number]) => low + Math.floor(random() * (high - low));
    const outputFile = join(mkdtempSync(join(tmpdir(), 'temporal-kcl-crash-')), 'deliveries.jsonl');
    console.log(`[crash] seed ${SEED} (replay: CRASH_SEED=${SEED}); deliveries in ${outputFile}`);
    const testStarted = Date.now();
    const { kinesis, client } = context;
    const streamName = await createStream(kinesis, 4, 'crash');
    const applicationName = uniqueName('crash-app');
    const taskQueue = uniqueName('crash-tq');
    const tail = new OutputTail(outputFile);
    const table = new CheckpointTable({ dynamoDb: context.dynamoDb, tableName: applicationName });

    const original = (await listShards(kinesis, streamName)).sort((a, b) => (startKey(a) < startKey(b) ? -1 : 1));
    const toSplit = original[Math.floor(random() * original.length)]!;
    const splitAt = (startKey(toSplit) + endKey(toSplit) + 1n) / 2n;
    const mergeDraw = random();
    const producer = new KeyedProducer(kinesis, {
      streamName,
      cellStarts: [...original.map(startKey), splitAt],
      random: produceRandom,
    });
    const log = (message: string) =>
      console.log(`[crash +${((Date.now() - testStarted) / 1000).toFixed(1)}s] ${message}`);

    const workers: (WorkerProcess | undefined)[] = [undefined, undefined];
    const upAt = [0, 0];
    const restarting: (Promise<void> | undefined)[] = [undefined, undefined];
    const startWorker = async (slot: number) => {
      workers[slot] = await startWorkerProcess(context, {
        taskQueue,
        outputFile,
        processorName: 'recorder',
        checkpoint: { mode: 'every-batch' },
        slowBatches: SLOW_BATCHES,
        stickyQueueScheduleToStartTimeoutMs: 1_000,
      });
      upAt[slot] = Date.now();
      log(`worker ${slot} up: pid ${workers[slot].pid}`);
    };
    const kills: (Kill & { slot: number; aimed: 'random' | 'mid-batch' })[] = [];
    const poller = pollLeases(table);
    const parents = new Map<string, string[]>();
    let result: Awaited<ReturnType<typeof stopStreamConsumer>>;
    const timings: Record<string, number> = {};

    try {
      await Promise.all([startWorker(0), startWorker(1)]);
      await startStreamConsumer(client, {
        applicationName,
        streamName,
        processor: 'recorder',
        taskQueue,
        shardSyncIntervalMs: 1_000,
        shardOptions: {
          initialPosition: 'TRIM_HORIZON',
          maxRecords: 20,
          idleTimeBetweenReadsMs: 250,
          parentShardPollIntervalMs: 250,
          heartbeatTimeoutMs: 2_000,
          workerScheduleToStartTimeoutMs: 1_500,
          // Continue-as-new happens during the run too.
          maxBatchesPerRun: 25,
        },
      });

      // Act: produce; reshard on a schedule; kill and restart workers at random moments.
      producer.start();
      const producing = Date.now();
      const resharding = (async () => {
        await sleep(SPLIT_AT_MS);
        await kinesis.send(
          new SplitShardCommand({
            StreamName: streamName,
            ShardToSplit: toSplit.ShardId!,
            NewStartingHashKey: splitAt.toString(),
          }),
        );
        log(`split ${toSplit.ShardId}`);
        await waitUntilActive(kinesis, streamName, 400);
        await sleep(MERGE_AT_MS - SPLIT_AT_MS);
        const open = (await listShards(kinesis, streamName))
          .filter((shard) => isOpen(shard) && !shard.ParentShardId)
          .sort((a, b) => (startKey(a) < startKey(b) ? -1 : 1));
        const pairs = open.flatMap((shard, i) => {
          const next = open[i + 1];
          return next && endKey(shard) + 1n === startKey(next) ? [[shard, next] as const] : [];
        });
        const [lower, upper] = pairs[Math.floor(mergeDraw * pairs.length)]!;
        await kinesis.send(
          new MergeShardsCommand({
            StreamName: streamName,
            ShardToMerge: lower.ShardId!,
            AdjacentShardToMerge: upper.ShardId!,
          }),
        );
        log(`merged ${lower.ShardId} and ${upper.ShardId}`);
        await waitUntilActive(kinesis, streamName, 400);
      })();
      resharding.catch(() => undefined); // awaited (and its failure reported) after the kills

      while (kills.length < MIN_KILLS || Date.now() - producing < PRODUCE_MS) {
        // The same draws for every kill, so the seed fixes each kill's choices whatever happened before.
        const draw = {
          interval: between(KILL_INTERVAL_MS),
          victim: random(),
          pause: random(),
          restart: between(RESTART_DELAY_MS),
        };
        await sleep(draw.interval);
        // Never both at once: the other worker keeps running.
        await settled(restarting);
        // A worker that holds shards (a restarted one may hold none until the other dies; after a kill, the shards are
        // in transit for a few seconds).
        const holding = () => [0, 1].filter((i) => [...tail.holders.values()].includes(workers[i]!.pid));
        const holderDeadline = Date.now() + 15_000;
        tail.poll();
        while (holding().length === 0 && Date.now() < holderDeadline) {
          await sleep(100);
          tail.poll();
        }
        const candidates = holding().length > 0 ? holding() : [0, 1];
        const slot = candidates[Math.floor(draw.victim * candidates.length)]!;
        const victim = workers[slot]!;
        await sleep(upAt[slot]! + MIN_UPTIME_MS - Date.now());
        let aimed: 'random' | 'mid-batch' = 'random';
        if (MID_BATCH_KILLS.has(kills.length)) {
          // Wait for a slow batch of the victim with at least 300 ms of its pause left, then kill inside the pause.
          const pauseLeft = () =>
            Math.max(
              0,
              ...[...(tail.slowInFlight.get(victim.pid)?.values() ?? [])].map(
                (at) => at + SLOW_BATCHES.ms - Date.now(),
              ),
            );
          const slowDeadline = Date.now() + 15_000;
          tail.poll();
          while (pauseLeft() < 300 && Date.now() < slowDeadline) {
            await sleep(20);
            tail.poll();
          }
          if (pauseLeft() >= 300) {
            aimed = 'mid-batch';
            await sleep(draw.pause * (pauseLeft() - 200));
          }
        }
        const at = Date.now();
        await victim.kill('SIGKILL');
        kills.push({ pid: victim.pid, at, slot, aimed });
        log(`kill #${kills.length}: worker ${slot} (pid ${victim.pid}), ${aimed}`);
        workers[slot] = undefined;
        restarting[slot] = sleep(draw.restart).then(() => startWorker(slot));
        restarting[slot].catch(() => undefined); // awaited before the next kill
        tail.poll();
      }
      await resharding;
      await producer.stop();
      timings.produceMs = Date.now() - producing;
      log(`stopped producing: ${producer.produced.size} user records in ${producer.kinesisRecords} Kinesis records`);
      await settled(restarting);

      // Wait until everything produced was delivered.
      const draining = Date.now();
      const missing = () => [...producer.produced.keys()].filter((data) => !tail.delivered.has(data));
      const shardStates = async () => {
        const status = await getStreamProgress(client, { applicationName, streamName }).catch(() => undefined);
        return (status?.shards ?? []).map(
          (s) =>
            `${s.shardId}: ${s.progress?.state ?? s.state} on ${s.progress?.worker?.split('@').at(-1) ?? '-'} at ${formatPosition(s.progress?.checkpoint)}, ${s.progress?.counters.workerMoves ?? 0} moves`,
        );
      };
      for (let reported = Date.now(); missing().length > 0; tail.poll()) {
        if (Date.now() - draining > DRAIN_TIMEOUT_MS) {
          assert.fail(
            `${missing().length} records not delivered within ${DRAIN_TIMEOUT_MS} ms (e.g. ${missing().slice(0, 5).join(', ')}); seed ${SEED}\n${(await shardStates()).join('\n')}`,
          );
        }
        if (Date.now() - reported > 10_000) {
          reported = Date.now();
          log(`draining: ${missing().length} records missing\n  ${(await shardStates()).join('\n  ')}`);
        }
        await sleep(200);
      }
      timings.drainMs = Date.now() - draining;
      const stopping = Date.now();
      result = await within(
        stopStreamConsumer(client, { applicationName, streamName, wait: true }),
        60_000,
        `the stream consumer did not stop within 60 s; seed ${SEED}`,
      );
      timings.stopMs = Date.now() - stopping;
      for (const shard of await listShards(kinesis, streamName)) {
        const ids = [shard.ParentShardId, shard.AdjacentParentShardId].filter((id): id is string => Boolean(id));
        if (ids.length > 0) parents.set(shard.ShardId!, ids);
      }
    } finally {
      await producer.stop().catch(() => undefined);
      await poller.stop();
      await settled(restarting).catch(() => undefined);
      await Promise.all(
        workers.map(async (worker) => {
          if (worker) await within(worker.kill('SIGTERM'), 8_000, 'no exit').catch(() => worker.kill('SIGKILL'));
        }),
      );
      await killAllWorkerProcesses();
    }

    // Assess
    const lines = readJsonLines<WorkerProcessLine>(outputFile);
    const report = checkDeliveries({ lines, produced: producer.produced, kills, snapshots: poller.snapshots, parents });
    const { figures } = report;
    const leases = await table.listLeases();
    const lastDelivered = lastDeliveredByShard(lines);

    const { executions, timeouts } = await timeoutsIn(client, `KclApplication = "${applicationName}"`);
    const timeoutKinds = new Map<string, { count: number; maxMs: number }>();
    for (const timeout of timeouts) {
      const kind = `${timeout.what} ${timeout.timeoutType}`;
      const seen = timeoutKinds.get(kind) ?? { count: 0, maxMs: 0 };
      timeoutKinds.set(kind, { count: seen.count + 1, maxMs: Math.max(seen.maxMs, timeout.waitedMs) });
    }
    // A task a killed worker had started: did it start before the kill (in flight), or after (handed to a dead poller)?
    const startedVsKill = (startedBy: { identity: string; at: number } | undefined) => {
      const kill = startedBy && kills.find((k) => startedBy.identity.includes(`-${k.pid}-`));
      return kill ? `, started ${startedBy.at - kill.at} ms after the kill of ${kill.pid}` : '';
    };
    const stalls = timeouts
      .filter((timeout) => timeout.waitedMs > 8_000)
      .map(
        (timeout) =>
          `${timeout.what} ${timeout.timeoutType} after ${timeout.waitedMs} ms at +${((timeout.at - testStarted) / 1000).toFixed(1)}s in ${timeout.workflowId.split('/').at(-1)}${startedVsKill(timeout.startedBy)}`,
      );
    const recovery = figures.kills.map((kill, i) => {
      const times = Object.values(kill.recoveryMs);
      const worst = times.length > 0 ? `${Math.max(...times)} ms` : 'no shard';
      return `#${i + 1} at +${((kill.at - testStarted) / 1000).toFixed(1)}s, pid ${kill.pid} (${kills[i]?.aimed}${kill.midBatch ? ', batch cut' : ''}): ${kill.shards.length} shards, ${kill.redelivered} records re-delivered (last batches ${kill.lastBatches}), recovered in ${worst}`;
    });
    console.log(
      [
        `[crash] seed ${SEED}: ${figures.kills.length} kills survived (${figures.kills.filter((k) => k.midBatch).length} in the middle of a batch)`,
        `[crash] records checked: ${figures.produced} produced (${producer.kinesisRecords} Kinesis records, ${producer.aggregates} aggregates, ${producer.keys.length} keys), ${figures.deliveries} deliveries in ${figures.runs} delivery runs`,
        `[crash] duplicates: ${figures.duplicates} (bound ${figures.duplicateBound}), batches re-delivered: ${figures.redeliveredBatches}`,
        `[crash] lease-table polls: ${poller.polls}, checkpoints seen: ${poller.snapshots.length}; producer retries: ${producer.retriedEntries} entries, ${producer.retriedCalls} calls`,
        `[crash] produce ${timings.produceMs} ms, drain ${timings.drainMs} ms, stop ${timings.stopMs} ms, total ${Date.now() - testStarted} ms`,
        ...recovery.map((line) => `[crash]   ${line}`),
        `[crash] ${executions} workflow runs (7 shard consumers and the stream consumer, with continue-as-new); timeouts in their histories: ${[...timeoutKinds].map(([kind, { count, maxMs }]) => `${kind} ×${count} (max ${maxMs} ms)`).join('; ')}`,
        ...stalls.map((line) => `[crash]   stall: ${line}`),
      ].join('\n'),
    );

    const show = (list: string[]) => `${list.length}: ${list.slice(0, 15).join('\n  ')} (seed ${SEED})`;
    assert.ok(figures.kills.length >= 5, `at least 5 kills, got ${figures.kills.length}`);
    assert.ok(
      figures.kills.some((kill) => kill.midBatch),
      'at least one kill in the middle of a batch',
    );
    assert.deepEqual(report.violations.lost, [], `records lost ${show(report.violations.lost)}`);
    assert.deepEqual(
      report.violations.duplicates,
      [],
      `duplicates beyond the bound ${show(report.violations.duplicates)}`,
    );
    assert.deepEqual(report.violations.order, [], `order per key broken ${show(report.violations.order)}`);
    assert.deepEqual(report.violations.checkpoints, [], `checkpoints ${show(report.violations.checkpoints)}`);
    assert.deepEqual(report.violations.other, [], `delivery log ${show(report.violations.other)}`);
    assert.ok(figures.duplicates <= figures.duplicateBound);

    // Every shard consumer ended as it should: the three parents at shard end, the four open shards on request; and the
    // final checkpoints: SHARD_END for parents, the last record delivered for open shards.
    const shards = await listShards(kinesis, streamName);
    assert.equal(shards.length, 7, 'four shards, two split children, one merge child');
    assert.equal(result!.started, 7);
    assert.deepEqual(result!.ended, { TERMINATE: 3, REQUESTED: 4 });
    for (const shard of shards) {
      const lease = leases.find((l) => l.shardId === shard.ShardId);
      const expected = isOpen(shard) ? lastDelivered.get(shard.ShardId!) : 'SHARD_END';
      assert.deepEqual(lease?.checkpoint, expected, `final checkpoint of ${shard.ShardId}`);
    }
  });
});

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
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  DescribeStreamSummaryCommand,
  type KinesisClient,
  ListShardsCommand,
  MergeShardsCommand,
  type Shard,
  SplitShardCommand,
} from '@aws-sdk/client-kinesis';
import { CheckpointTable } from '../../src/checkpoint/checkpoint-table';
import { getStreamProgress, startStreamConsumer, stopStreamConsumer } from '../../src/client/consumers';
import { comparePositions, type ExtendedSequenceNumber, formatPosition } from '../../src/positions';
import type { WorkerProcessLine } from '../fixtures/worker-process';
import { killAllWorkerProcesses, startWorkerProcess, type WorkerProcess } from '../helpers/child-worker';
import { checkDeliveries, type Kill, type LeaseSnapshot } from '../helpers/delivery-log';
import { timeoutsIn } from '../helpers/history-timeouts';
import { createStream, kclTestContext, type KclTestContext } from '../helpers/kcl';
import { KeyedProducer, seededRandom } from '../helpers/keyed-producer';
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

async function listShards(kinesis: KinesisClient, streamName: string): Promise<Shard[]> {
  return (await kinesis.send(new ListShardsCommand({ StreamName: streamName }))).Shards ?? [];
}

async function waitUntilActive(kinesis: KinesisClient, streamName: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    const summary = await kinesis.send(new DescribeStreamSummaryCommand({ StreamName: streamName }));
    if (summary.StreamDescriptionSummary?.StreamStatus === 'ACTIVE') return;
    await sleep(50);
  }
  throw new Error(`stream ${streamName} did not become ACTIVE`);
}

/** Follows the shared output file as the workers append to it. */
class OutputTail {
  readonly delivered = new Set<string>();
  /** Per worker pid, its slow batches still in processRecords (a `slow` line, no `checkpoint` yet). */
  readonly slowInFlight = new Map<number, Set<string>>();
  /** The worker pid whose processor has each shard (its latest `initialize`, until `shutdown`). */
  readonly holders = new Map<string, number>();
  lines = 0;
  private offset = 0;
  private partial = '';

  constructor(private readonly file: string) {}

  poll(): void {
    if (!existsSync(this.file)) return;
    const fd = openSync(this.file, 'r');
    try {
      const buffer = Buffer.alloc(1 << 20);
      for (;;) {
        const read = readSync(fd, buffer, 0, buffer.length, this.offset);
        if (read === 0) break;
        this.offset += read;
        const text = this.partial + buffer.subarray(0, read).toString('utf8');
        const lines = text.split('\n');
        this.partial = lines.pop() ?? '';
        for (const raw of lines) if (raw) this.take(JSON.parse(raw) as WorkerProcessLine);
      }
    } finally {
      closeSync(fd);
    }
  }

  private take(line: WorkerProcessLine): void {
    this.lines++;
    if (line.kind === 'record') this.delivered.add(line.data);
    if (line.kind === 'initialize') this.holders.set(line.shardId, line.pid);
    if (line.kind === 'shutdown' && this.holders.get(line.shardId) === line.pid) this.holders.delete(line.shardId);
    if (line.kind === 'slow') {
      const batches = this.slowInFlight.get(line.pid) ?? new Set<string>();
      batches.add(line.batch);
      this.slowInFlight.set(line.pid, batches);
    }
    if (line.kind === 'checkpoint' && line.batch) this.slowInFlight.get(line.pid)?.delete(line.batch);
  }
}

/** Reads the lease table every 100 ms and keeps each checkpoint the first time it is seen, with the read's end time. */
function pollLeases(table: CheckpointTable) {
  const snapshots: LeaseSnapshot[] = [];
  const last = new Map<string, string>();
  let stopped = false;
  let polls = 0;
  const running = (async () => {
    while (!stopped) {
      try {
        const leases = await table.listLeases();
        const at = Date.now();
        polls++;
        for (const lease of leases) {
          if (lease.checkpoint === undefined) continue;
          const seen = JSON.stringify(lease.checkpoint);
          if (last.get(lease.shardId) === seen) continue;
          last.set(lease.shardId, seen);
          snapshots.push({ at, shardId: lease.shardId, checkpoint: lease.checkpoint });
        }
      } catch {
        // the table does not exist yet
      }
      await sleep(100);
    }
  })();
  return {
    snapshots,
    get polls() {
      return polls;
    },
    async stop() {
      stopped = true;
      await running;
    },
  };
}

describe('crash suite: SIGKILLed workers while producing and resharding', () => {
  let context: KclTestContext;
  before(async () => {
    context = await kclTestContext();
  });
  after(async () => {
    await killAllWorkerProcesses();
    await context.close();
  });

  test('no record lost; duplicates only from the batch in flight at a kill; order per key kept', async () => {
    // Prepare
    const random = seededRandom(SEED);
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
    const producer = new KeyedProducer(kinesis, {
      streamName,
      cellStarts: [...original.map(startKey), splitAt],
      random,
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
          maxBatchesPerRun: 150,
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
        await waitUntilActive(kinesis, streamName);
        await sleep(MERGE_AT_MS - SPLIT_AT_MS);
        const open = (await listShards(kinesis, streamName))
          .filter((shard) => isOpen(shard) && !shard.ParentShardId)
          .sort((a, b) => (startKey(a) < startKey(b) ? -1 : 1));
        const pairs = open.flatMap((shard, i) => {
          const next = open[i + 1];
          return next && endKey(shard) + 1n === startKey(next) ? [[shard, next] as const] : [];
        });
        const [lower, upper] = pairs[Math.floor(random() * pairs.length)]!;
        await kinesis.send(
          new MergeShardsCommand({
            StreamName: streamName,
            ShardToMerge: lower.ShardId!,
            AdjacentShardToMerge: upper.ShardId!,
          }),
        );
        log(`merged ${lower.ShardId} and ${upper.ShardId}`);
        await waitUntilActive(kinesis, streamName);
      })();

      while (kills.length < MIN_KILLS || Date.now() - producing < PRODUCE_MS) {
        await sleep(between(KILL_INTERVAL_MS));
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
        const slot = candidates[Math.floor(random() * candidates.length)]!;
        const victim = workers[slot]!;
        await sleep(upAt[slot]! + MIN_UPTIME_MS - Date.now());
        let aimed: 'random' | 'mid-batch' = 'random';
        if (MID_BATCH_KILLS.has(kills.length)) {
          const deadline = Date.now() + 15_000;
          for (tail.poll(); Date.now() < deadline && !tail.slowInFlight.get(victim.pid)?.size; tail.poll()) {
            await sleep(20);
          }
          if (tail.slowInFlight.get(victim.pid)?.size) {
            aimed = 'mid-batch';
            await sleep(between([0, SLOW_BATCHES.ms / 2]));
          }
        }
        const at = Date.now();
        await victim.kill('SIGKILL');
        kills.push({ pid: victim.pid, at, slot, aimed });
        log(`kill #${kills.length}: worker ${slot} (pid ${victim.pid}), ${aimed}`);
        workers[slot] = undefined;
        const delay = between(RESTART_DELAY_MS);
        restarting[slot] = sleep(delay).then(() => startWorker(slot));
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
    const lines = readFileSync(outputFile, 'utf8')
      .split('\n')
      .filter((line) => line.length > 0)
      .map((line) => JSON.parse(line) as WorkerProcessLine);
    const report = checkDeliveries({ lines, produced: producer.produced, kills, snapshots: poller.snapshots, parents });
    const { figures } = report;
    const leases = await table.listLeases();
    const lastDelivered = new Map<string, ExtendedSequenceNumber>();
    for (const line of lines) {
      if (line.kind !== 'record') continue;
      const position = { sequenceNumber: line.sequenceNumber, subSequenceNumber: line.subSequenceNumber ?? 0 };
      const before = lastDelivered.get(line.shardId);
      if (!before || comparePositions(position, before) > 0) lastDelivered.set(line.shardId, position);
    }

    const timeouts = await timeoutsIn(client, `KclApplication = "${applicationName}"`);
    const timeoutKinds = new Map<string, { count: number; maxMs: number }>();
    for (const timeout of timeouts) {
      const kind = `${timeout.what} ${timeout.timeoutType}`;
      const seen = timeoutKinds.get(kind) ?? { count: 0, maxMs: 0 };
      timeoutKinds.set(kind, { count: seen.count + 1, maxMs: Math.max(seen.maxMs, timeout.waitedMs) });
    }
    const stalls = timeouts
      .filter((timeout) => timeout.waitedMs > 5_000)
      .map(
        (timeout) =>
          `${timeout.what} ${timeout.timeoutType} after ${timeout.waitedMs} ms at +${((timeout.at - testStarted) / 1000).toFixed(1)}s in ${timeout.workflowId.split('/').at(-1)}`,
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
        `[crash] timeouts in the histories: ${[...timeoutKinds].map(([kind, { count, maxMs }]) => `${kind} ×${count} (max ${maxMs} ms)`).join('; ')}`,
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

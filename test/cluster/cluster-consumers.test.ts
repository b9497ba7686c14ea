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
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { MergeShardsCommand, type Shard, SplitShardCommand } from '@aws-sdk/client-kinesis';
import { CheckpointTable } from '../../src/checkpoint/checkpoint-table';
import { stopStreamConsumer } from '../../src/client/consumers';
import type { ClusterService } from '../../src/dev/cluster';
import { comparePositions, type ExtendedSequenceNumber } from '../../src/positions';
import { DELIVERY_LOG_VARIABLE } from '../fixtures/delivery-log-processor';
import type { WorkerProcessLine } from '../fixtures/worker-process';
import { cliEnvironment, type CliProcess, killAllCliProcesses, runCli, spawnCli } from '../helpers/cli';
import { restartClusterService } from '../helpers/cluster-control';
import { checkDeliveries, type DeliveryReport, type Kill } from '../helpers/delivery-log';
import { createStream, kclTestContextForSuite, type KclTestContext, listShards, waitUntilActive } from '../helpers/kcl';
import { KeyedProducer, seededRandom } from '../helpers/keyed-producer';
import { OutputTail, pollLeases } from '../helpers/run-watch';
import { uniqueName } from '../helpers/stack';

const PROCESSOR = 'test/fixtures/delivery-log-processor.ts';
const SEED = Number(process.env.CLUSTER_SEED ?? Math.floor(Math.random() * 2 ** 31));
const DRAIN_TIMEOUT_MS = 90_000;
/** Shard consumer options: small batches and quick failover, so a short run holds many batches and several moves. */
const SHARD_OPTIONS = {
  initialPosition: 'TRIM_HORIZON',
  maxRecords: 20,
  idleTimeBetweenReadsMs: 250,
  parentShardPollIntervalMs: 250,
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const startKey = (shard: Shard) => BigInt(shard.HashKeyRange?.StartingHashKey ?? '-1');
const endKey = (shard: Shard) => BigInt(shard.HashKeyRange?.EndingHashKey ?? '-1');
const isOpen = (shard: Shard) => shard.SequenceNumberRange?.EndingSequenceNumber === undefined;
const byStart = (a: Shard, b: Shard) => (startKey(a) < startKey(b) ? -1 : 1);

/** A stream, an application on its own task queue, worker processes, a producer and the delivery log. */
class ClusterRun {
  readonly applicationName: string;
  readonly taskQueue: string;
  readonly dir: string;
  readonly deliveryLog: string;
  readonly tail: OutputTail;
  readonly env: NodeJS.ProcessEnv;
  readonly workers: CliProcess[] = [];
  readonly kills: Kill[] = [];
  readonly table: CheckpointTable;
  readonly poller: ReturnType<typeof pollLeases>;
  readonly started = Date.now();
  streamName = '';
  original: Shard[] = [];
  producer: KeyedProducer | undefined;

  constructor(
    private readonly context: KclTestContext,
    private readonly name: string,
  ) {
    this.applicationName = uniqueName(`${name}-app`);
    this.taskQueue = uniqueName(`${name}-tq`);
    this.dir = mkdtempSync(join(tmpdir(), `kcl-cluster-test-${name}-`));
    this.deliveryLog = join(this.dir, 'deliveries.jsonl');
    this.tail = new OutputTail(this.deliveryLog);
    this.env = cliEnvironment(context.stack, {
      TEMPORAL_KCL_TASK_QUEUE: this.taskQueue,
      [DELIVERY_LOG_VARIABLE]: this.deliveryLog,
    });
    this.table = new CheckpointTable({ dynamoDb: context.dynamoDb, tableName: this.applicationName });
    this.poller = pollLeases(this.table);
  }

  log(message: string): void {
    console.log(`[${this.name} +${((Date.now() - this.started) / 1000).toFixed(1)}s] ${message}`);
  }

  /** Creates the 4-shard stream; the producer's cells include the hash key a later split adds. */
  async createStream(splitAt?: (shards: Shard[]) => bigint): Promise<void> {
    this.streamName = await createStream(this.context.kinesis, 4, this.name);
    this.original = (await listShards(this.context.kinesis, this.streamName)).sort(byStart);
    this.producer = new KeyedProducer(this.context.kinesis, {
      streamName: this.streamName,
      cellStarts: [...this.original.map(startKey), ...(splitAt ? [splitAt(this.original)] : [])],
      random: seededRandom(SEED),
      keysPerCell: 4,
      tickMs: 100,
    });
  }

  async addWorker(): Promise<CliProcess> {
    const worker = spawnCli(['worker', '--processor', PROCESSOR, '--log-level', 'WARN'], this.env);
    this.workers.push(worker);
    await worker.waitFor(/temporal-kcl worker \S+ ready/, 120_000);
    this.log(`worker ${worker.pid} ready`);
    return worker;
  }

  /** `temporal-kcl start`, as a user starts a consumer. */
  async start(): Promise<void> {
    const optionsFile = join(this.dir, 'shard-options.json');
    writeFileSync(optionsFile, JSON.stringify(SHARD_OPTIONS));
    const args = ['start', '--app', this.applicationName, '--stream', this.streamName, '--options', optionsFile];
    const started = await runCli([...args, '--shard-sync-interval', '1s'], this.env);
    assert.equal(started.code, 0, started.stderr);
  }

  /** The live workers that hold at least one shard (by the delivery log). */
  holders(): CliProcess[] {
    this.tail.poll();
    const pids = new Set(this.tail.holders.values());
    return this.workers.filter((worker) => pids.has(worker.pid) && !this.killed(worker));
  }

  private killed(worker: CliProcess): boolean {
    return this.kills.some((kill) => kill.pid === worker.pid);
  }

  /** SIGKILLs a worker that holds shards (its whole process group; checks it is gone) and starts another. */
  async killAndReplaceWorker(): Promise<void> {
    let victims = this.holders();
    for (const deadline = Date.now() + 15_000; victims.length === 0 && Date.now() < deadline; await sleep(100)) {
      victims = this.holders();
    }
    const victim = victims[0] ?? this.workers.find((worker) => !this.killed(worker));
    assert.ok(victim, 'a live worker to kill');
    const at = Date.now();
    const exit = await victim.kill('SIGKILL');
    assert.equal(exit.signal, 'SIGKILL');
    assert.throws(() => process.kill(victim.pid, 0), { code: 'ESRCH' }, `worker ${victim.pid} is gone`);
    this.kills.push({ pid: victim.pid, at });
    this.log(`SIGKILLed worker ${victim.pid}`);
    await this.addWorker();
  }

  /** Records put so far that were not delivered yet. */
  missing(): string[] {
    this.tail.poll();
    return [...(this.producer?.produced.keys() ?? [])].filter((data) => !this.tail.delivered.has(data));
  }

  async drain(): Promise<number> {
    const draining = Date.now();
    while (this.missing().length > 0) {
      if (Date.now() - draining > DRAIN_TIMEOUT_MS) {
        assert.fail(`${this.missing().length} records not delivered within ${DRAIN_TIMEOUT_MS} ms (seed ${SEED})`);
      }
      await sleep(200);
    }
    return Date.now() - draining;
  }

  /**
   * Ms from `since` until a record put after `after` (a moment) was delivered: consumption runs end to end again.
   */
  async untilFreshDelivery(since: number): Promise<number> {
    const before = new Set(this.producer?.produced.keys());
    for (const deadline = Date.now() + 60_000; ; await sleep(50)) {
      this.tail.poll();
      if ([...this.tail.delivered].some((data) => !before.has(data))) return Date.now() - since;
      if (Date.now() > deadline) throw new Error('no record put after the restart was delivered within 60 s');
    }
  }

  lines(): WorkerProcessLine[] {
    return readFileSync(this.deliveryLog, 'utf8')
      .split('\n')
      .filter((line) => line.length > 0)
      .map((line) => JSON.parse(line) as WorkerProcessLine);
  }

  /** Stops the consumer (every shard consumer ends) and checks the delivery log. */
  async finish(): Promise<{
    report: DeliveryReport;
    result: Awaited<ReturnType<typeof stopStreamConsumer>>;
    lines: WorkerProcessLine[];
    shards: Shard[];
  }> {
    const { client, kinesis } = this.context;
    const result = await stopStreamConsumer(client, {
      applicationName: this.applicationName,
      streamName: this.streamName,
      wait: true,
    });
    await this.poller.stop();
    const shards = await listShards(kinesis, this.streamName);
    const parents = new Map<string, string[]>();
    for (const shard of shards) {
      const ids = [shard.ParentShardId, shard.AdjacentParentShardId].filter((id): id is string => Boolean(id));
      if (ids.length > 0) parents.set(shard.ShardId!, ids);
    }
    const lines = this.lines();
    const report = checkDeliveries({
      lines,
      produced: this.producer!.produced,
      kills: this.kills,
      snapshots: this.poller.snapshots,
      parents,
    });
    // Final checkpoints: SHARD_END for parents, the last record delivered for open shards.
    const leases = await this.table.listLeases();
    const lastDelivered = new Map<string, ExtendedSequenceNumber>();
    for (const line of lines) {
      if (line.kind !== 'record') continue;
      const position = { sequenceNumber: line.sequenceNumber, subSequenceNumber: line.subSequenceNumber ?? 0 };
      const before = lastDelivered.get(line.shardId);
      if (!before || comparePositions(position, before) > 0) lastDelivered.set(line.shardId, position);
    }
    for (const shard of shards) {
      const lease = leases.find((l) => l.shardId === shard.ShardId);
      const expected = isOpen(shard) ? lastDelivered.get(shard.ShardId!) : 'SHARD_END';
      assert.deepEqual(lease?.checkpoint, expected, `final checkpoint of ${shard.ShardId}`);
    }
    return { report, result, lines, shards };
  }

  async close(): Promise<void> {
    await this.producer?.stop().catch(() => undefined);
    await this.poller.stop();
    await Promise.all(this.workers.map((worker) => worker.kill('SIGTERM').catch(() => worker.kill('SIGKILL'))));
  }
}

const show = (list: string[]) => `${list.length}: ${list.slice(0, 10).join('\n  ')} (seed ${SEED})`;

function assertGuarantees(report: DeliveryReport, allowedDuplicates: (duplicate: string) => boolean = () => false) {
  assert.deepEqual(report.violations.lost, [], `records lost ${show(report.violations.lost)}`);
  const duplicates = report.violations.duplicates.filter((violation) => !allowedDuplicates(violation));
  assert.deepEqual(duplicates, [], `duplicates beyond the batch in flight at a kill ${show(duplicates)}`);
  assert.deepEqual(report.violations.order, [], `order per key broken ${show(report.violations.order)}`);
  assert.deepEqual(report.violations.checkpoints, [], `checkpoints ${show(report.violations.checkpoints)}`);
  assert.deepEqual(report.violations.other, [], `delivery log ${show(report.violations.other)}`);
}

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
      const stopped = await watch.kill('SIGINT');
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
      assert.equal(frontend.service, 'frontend');
    } finally {
      await watch?.kill('SIGKILL').catch(() => undefined);
      await run.close();
    }
  });
});

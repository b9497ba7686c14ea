/**
 * One scenario of the cluster suite (test/cluster/): a 4-shard stream, an application on its own task queue,
 * `temporal-kcl worker` processes with test/fixtures/delivery-log-processor.ts, `temporal-kcl start`, a keyed producer
 * of plain and KPL-aggregated records, the lease table polled, and at the end the delivery log's checks
 * (test/helpers/delivery-log.ts) and the final checkpoints.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Shard } from '@aws-sdk/client-kinesis';
import { CheckpointTable } from '../../src/checkpoint/checkpoint-table';
import { stopStreamConsumer } from '../../src/client/consumers';
import { DELIVERY_LOG_VARIABLE } from '../fixtures/delivery-log-processor';
import type { WorkerProcessLine } from '../fixtures/worker-process';
import { cliEnvironment, type CliProcess, runCli, spawnCli } from './cli';
import { checkDeliveries, type DeliveryReport, type Kill, lastDeliveredByShard } from './delivery-log';
import { readJsonLines } from './json-lines';
import { createStream, type KclTestContext, listShards } from './kcl';
import { KeyedProducer, seededRandom } from './keyed-producer';
import { OutputTail, pollLeases } from './run-watch';
import { uniqueName } from './stack';

const PROCESSOR = 'test/fixtures/delivery-log-processor.ts';
export const SEED = Number(process.env.CLUSTER_SEED ?? Math.floor(Math.random() * 2 ** 31));
const DRAIN_TIMEOUT_MS = 90_000;
/** Shard consumer options: small batches and quick failover, so a short run holds many batches and several moves. */
const SHARD_OPTIONS = {
  initialPosition: 'TRIM_HORIZON',
  maxRecords: 20,
  idleTimeBetweenReadsMs: 250,
  parentShardPollIntervalMs: 250,
};

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
export const startKey = (shard: Shard) => BigInt(shard.HashKeyRange?.StartingHashKey ?? '-1');
export const endKey = (shard: Shard) => BigInt(shard.HashKeyRange?.EndingHashKey ?? '-1');
export const isOpen = (shard: Shard) => shard.SequenceNumberRange?.EndingSequenceNumber === undefined;
export const byStart = (a: Shard, b: Shard) => (startKey(a) < startKey(b) ? -1 : 1);

/** A stream, an application on its own task queue, worker processes, a producer and the delivery log. */
export class ClusterRun {
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
    return readJsonLines<WorkerProcessLine>(this.deliveryLog);
  }

  /** Stops the consumer (every shard consumer ends) and checks the delivery log. */
  async finish(): Promise<{
    report: DeliveryReport;
    result: Awaited<ReturnType<typeof stopStreamConsumer>>;
    lines: WorkerProcessLine[];
    shards: Shard[];
  }> {
    const { client, kinesis } = this.context;
    const stopping = Date.now();
    const result = await stopStreamConsumer(client, {
      applicationName: this.applicationName,
      streamName: this.streamName,
      wait: true,
    });
    this.log(`stream consumer stopped in ${Date.now() - stopping} ms`);
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
    const lastDelivered = lastDeliveredByShard(lines);
    for (const shard of shards) {
      const lease = leases.find((l) => l.shardId === shard.ShardId);
      const expected = isOpen(shard) ? lastDelivered.get(shard.ShardId!) : 'SHARD_END';
      assert.deepEqual(lease?.checkpoint, expected, `final checkpoint of ${shard.ShardId}`);
    }
    return { report, result, lines, shards };
  }

  /**
   * SIGTERM to every worker not killed by the test (a graceful stop), and how each ended: its exit and the time it took.
   */
  async stopWorkers(): Promise<
    { pid: number; exit: { code: number | null; signal: NodeJS.Signals | null }; ms: number }[]
  > {
    const stopping = Date.now();
    const stopped = await Promise.all(
      this.workers
        .filter((worker) => !this.killed(worker))
        .map(async (worker) => ({ pid: worker.pid, exit: await worker.kill('SIGTERM'), ms: Date.now() - stopping })),
    );
    this.log(
      `workers stopped (SIGTERM): ${stopped.map((w) => `${w.pid} exit ${w.exit.code ?? w.exit.signal} after ${w.ms} ms`).join(', ')}`,
    );
    return stopped;
  }

  async close(): Promise<void> {
    await this.producer?.stop().catch(() => undefined);
    await this.poller.stop();
    await Promise.all(this.workers.map((worker) => worker.kill('SIGKILL')));
  }
}

const show = (list: string[]) => `${list.length}: ${list.slice(0, 10).join('\n  ')} (seed ${SEED})`;

export function assertGuarantees(
  report: DeliveryReport,
  allowedDuplicates: (duplicate: string) => boolean = () => false,
) {
  assert.deepEqual(report.violations.lost, [], `records lost ${show(report.violations.lost)}`);
  const duplicates = report.violations.duplicates.filter((violation) => !allowedDuplicates(violation));
  assert.deepEqual(duplicates, [], `duplicates beyond the batch in flight at a kill ${show(duplicates)}`);
  assert.deepEqual(report.violations.order, [], `order per key broken ${show(report.violations.order)}`);
  assert.deepEqual(report.violations.checkpoints, [], `checkpoints ${show(report.violations.checkpoints)}`);
  assert.deepEqual(report.violations.other, [], `delivery log ${show(report.violations.other)}`);
}

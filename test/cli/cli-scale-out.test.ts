/**
 * Scale-out with real `temporal-kcl worker` processes on a 16-shard stream: the stream consumer spreads the shards over
 * the workers (no worker above ceil(S/N) + 1) within 30 s of every membership change; a rolling restart under live
 * load hands every shard over gracefully (nothing lost, nothing twice, per-key order kept); a SIGKILL during a
 * rebalance loses nothing; `--max-shards` leaves shards WAITING_FOR_WORKER until capacity appears.
 *
 * Who holds a shard is read from the processor's own lines (test/fixtures/file-appending-processor.ts notes every
 * `initialize` and `shutdown` with its process id), and cross-checked with `temporal-kcl status --output json`.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startStreamConsumer, stopStreamConsumer } from '../../src/client/consumers';
import { APPEND_FILE_VARIABLE } from '../fixtures/file-appending-processor';
import { isEvent, isRecord, readLines } from '../helpers/appended-lines';
import { cliEnvironment, type CliProcess, killAllCliProcesses, runCli, spawnCli } from '../helpers/cli';
import { createStream, kclTestContext, type KclTestContext, putRecords } from '../helpers/kcl';
import { uniqueName } from '../helpers/stack';

const PROCESSOR = 'test/fixtures/file-appending-processor.ts';
const SHARDS = 16;
/** The bound: within 30 s of a membership change. */
const BALANCE_WITHIN_MS = 30_000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));


/** Who holds each shard's processor: the process whose `initialize` was the shard's last lifecycle event. */
function holders(file: string): Map<string, number> {
  const held = new Map<string, number>();
  for (const line of readLines(file).filter(isEvent)) {
    if (line.event === 'initialize') held.set(line.shard, line.pid);
    else if (held.get(line.shard) === line.pid) held.delete(line.shard);
  }
  return held;
}

function countsByPid(held: Map<string, number>): Map<number, number> {
  const counts = new Map<number, number>();
  for (const pid of held.values()) counts.set(pid, (counts.get(pid) ?? 0) + 1);
  return counts;
}

/** A fleet of CLI workers on one task queue, writing to one file. */
class Fleet {
  readonly workers: CliProcess[] = [];
  constructor(
    private readonly env: NodeJS.ProcessEnv,
    private readonly extraArgs: string[] = [],
  ) {}

  async add(count = 1, args: string[] = []): Promise<CliProcess[]> {
    const added = Array.from({ length: count }, () =>
      spawnCli(['worker', '--processor', PROCESSOR, '--log-level', 'WARN', ...this.extraArgs, ...args], this.env),
    );
    this.workers.push(...added);
    await Promise.all(added.map((worker) => worker.waitFor(/temporal-kcl worker \S+ ready/, 90_000)));
    return added;
  }

  live(): CliProcess[] {
    return this.workers.filter((worker) => !this.gone.has(worker.pid));
  }

  private readonly gone = new Set<number>();

  /** Stops a worker with a signal (SIGTERM: gracefully) and checks the process is gone. */
  async stop(worker: CliProcess, signal: NodeJS.Signals): Promise<{ exit: Awaited<CliProcess['exited']>; ms: number }> {
    const started = Date.now();
    const exit = await worker.kill(signal);
    this.gone.add(worker.pid);
    assert.throws(() => process.kill(worker.pid, 0), { code: 'ESRCH' }, `worker ${worker.pid} is gone`);
    return { exit, ms: Date.now() - started };
  }
}

/**
 * Waits until every active shard is held by a live worker and none holds more than ceil(S/N) + 1 (or its cap);
 * returns the time it took and the final counts.
 */
async function balanced(
  file: string,
  fleet: Fleet,
  options: { shards?: number; cap?: number; withinMs?: number } = {},
): Promise<{ ms: number; counts: Map<number, number> }> {
  const started = Date.now();
  const shards = options.shards ?? SHARDS;
  const withinMs = options.withinMs ?? BALANCE_WITHIN_MS;
  let last = '';
  for (;;) {
    const live = new Set(fleet.live().map((worker) => worker.pid));
    const held = holders(file);
    const counts = countsByPid(held);
    const bound = Math.min(options.cap ?? Infinity, Math.ceil(shards / live.size) + 1);
    const onLive = [...held.values()].filter((pid) => live.has(pid)).length;
    const worst = Math.max(0, ...[...counts].filter(([pid]) => live.has(pid)).map(([, n]) => n));
    last = `held on live workers ${onLive}/${shards}, most on one worker ${worst} (bound ${bound}); counts ${JSON.stringify([...counts])}`;
    if (onLive === shards && worst <= bound) return { ms: Date.now() - started, counts };
    if (Date.now() - started > withinMs) throw new Error(`not balanced within ${withinMs} ms: ${last}`);
    await sleep(250);
  }
}

/** A producer of keyed records (`<key>:<n>`, n increasing per key) across the stream's shards. */
function produce(context: KclTestContext, streamName: string, keys = 48) {
  const produced: string[] = [];
  let producing = true;
  const done = (async () => {
    for (let i = 0; producing; i++) {
      const key = `key-${i % keys}`;
      const data = `${key}:${Math.floor(i / keys)}`;
      await putRecords(context.kinesis, streamName, [{ partitionKey: key, data }]);
      produced.push(data);
      await sleep(5);
    }
  })();
  return {
    produced,
    async stop() {
      producing = false;
      await done;
    },
  };
}

/** Lost records, records delivered twice, and keys whose records were delivered out of order. */
function deliveries(file: string, produced: string[]): { lost: string[]; twice: string[]; outOfOrder: string[] } {
  const records = readLines(file).filter(isRecord);
  const counts = new Map<string, number>();
  const lastByKey = new Map<string, number>();
  const outOfOrder = new Set<string>();
  for (const line of records) {
    counts.set(line.data, (counts.get(line.data) ?? 0) + 1);
    const [key, n] = line.data.split(':') as [string, string];
    const previous = lastByKey.get(key) ?? -1;
    if (Number(n) <= previous && counts.get(line.data) === 1) outOfOrder.add(key);
    lastByKey.set(key, Math.max(previous, Number(n)));
  }
  return {
    lost: produced.filter((data) => !counts.has(data)),
    twice: [...counts].filter(([, n]) => n > 1).map(([data]) => data),
    outOfOrder: [...outOfOrder],
  };
}

async function untilAllDelivered(file: string, produced: string[], timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { lost } = deliveries(file, produced);
    if (lost.length === 0) return;
    if (Date.now() > deadline) throw new Error(`${lost.length} records not delivered, e.g. ${lost.slice(0, 5).join(', ')}`);
    await sleep(500);
  }
}

describe('scale-out: real worker processes over a 16-shard stream', () => {
  let context: KclTestContext;
  let dir: string;
  before(async () => {
    context = await kclTestContext();
    dir = mkdtempSync(join(tmpdir(), 'kcl-scale-out-'));
  });
  after(async () => {
    await killAllCliProcesses();
    await context.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A stream, an application and its task queue, a fleet, and a started stream consumer. */
  async function setUp(name: string, fleetArgs: string[] = []) {
    const streamName = await createStream(context.kinesis, SHARDS, name);
    const applicationName = uniqueName(`${name}-app`);
    const taskQueue = uniqueName(`${name}-tq`);
    const file = join(dir, `${name}.jsonl`);
    const env = cliEnvironment(context.stack, { TEMPORAL_KCL_TASK_QUEUE: taskQueue, [APPEND_FILE_VARIABLE]: file });
    const fleet = new Fleet(env, fleetArgs);
    const start = () =>
      startStreamConsumer(context.client, {
        applicationName,
        streamName,
        taskQueue,
        shardOptions: { initialPosition: 'TRIM_HORIZON', idleTimeBetweenReadsMs: 100, maxRecords: 25 },
      });
    const stop = () => stopStreamConsumer(context.client, { applicationName, streamName, wait: true });
    const status = async () => {
      const run = await runCli(['status', '--app', applicationName, '--stream', streamName, '--json'], env);
      assert.equal(run.code, 0, run.stderr);
      return JSON.parse(run.stdout) as { shards: { shardId: string; state: string; worker: string | null }[] };
    };
    return { streamName, applicationName, taskQueue, file, env, fleet, start, stop, status };
  }

  test('2 → 4 → 3 workers: no worker above ceil(16/N) + 1 within 30 s of each change', async (t) => {
    const s = await setUp('scale-2-4-3');
    await s.fleet.add(2);
    await s.start();
    const load = produce(context, s.streamName);
    try {
      const two = await balanced(s.file, s.fleet);
      await s.fleet.add(2);
      const four = await balanced(s.file, s.fleet);
      // Every worker of the four got shards (the bound alone would allow a newcomer only one).
      const held = countsByPid(holders(s.file));
      for (const worker of s.fleet.live()) assert.ok((held.get(worker.pid) ?? 0) >= 1, `worker ${worker.pid} holds shards`);
      const leaving = s.fleet.live()[0]!;
      const stopped = await s.fleet.stop(leaving, 'SIGTERM');
      assert.deepEqual(stopped.exit, { code: 0, signal: null });
      const three = await balanced(s.file, s.fleet);
      t.diagnostic(
        `balanced after start ${two.ms} ms, after 2 joined ${four.ms} ms, after 1 left ${three.ms} ms (stop took ${stopped.ms} ms)`,
      );

      // `status` names each shard's worker: the same ones the processors' lines show (the workers report where
      // their shards are within about a second, so it may lag a move by that much).
      let statusCounts: number[] = [];
      let heldCounts: number[] = [];
      for (const deadline = Date.now() + 15_000; Date.now() < deadline; await sleep(1_000)) {
        const status = await s.status();
        const byQueue = new Map<string, number>();
        for (const shard of status.shards) {
          if (shard.worker) byQueue.set(shard.worker, (byQueue.get(shard.worker) ?? 0) + 1);
        }
        statusCounts = [...byQueue.values()].sort((a, b) => a - b);
        heldCounts = [...countsByPid(holders(s.file)).values()].sort((a, b) => a - b);
        if (status.shards.every((shard) => shard.worker) && statusCounts.join() === heldCounts.join()) break;
      }
      assert.deepEqual(statusCounts, heldCounts, 'status counts per worker = processors held per process');
    } finally {
      await load.stop();
    }
    await untilAllDelivered(s.file, load.produced);
    const { lost, twice, outOfOrder } = deliveries(s.file, load.produced);
    assert.deepEqual(lost, []);
    assert.deepEqual(twice, [], 'balancing moves and a graceful stop deliver nothing twice');
    assert.deepEqual(outOfOrder, [], 'per-key order');
    await s.stop();
    for (const worker of s.fleet.live()) await s.fleet.stop(worker, 'SIGTERM');
  });

  test('rolling restart of every worker under live load: 0 lost, 0 twice, per-key order, only REQUESTED shutdowns', async (t) => {
    const s = await setUp('rolling');
    const original = await s.fleet.add(3);
    await s.start();
    const load = produce(context, s.streamName);
    const stops: number[] = [];
    try {
      await balanced(s.file, s.fleet);
      for (const worker of original) {
        const { exit, ms } = await s.fleet.stop(worker, 'SIGTERM');
        assert.deepEqual(exit, { code: 0, signal: null }, `worker ${worker.pid} exits 0`);
        stops.push(ms);
        const [replacement] = await s.fleet.add(1);
        await balanced(s.file, s.fleet);
        assert.ok((countsByPid(holders(s.file)).get(replacement!.pid) ?? 0) >= 1, 'the replacement took shards');
      }
    } finally {
      await load.stop();
    }
    await untilAllDelivered(s.file, load.produced);
    const { lost, twice, outOfOrder } = deliveries(s.file, load.produced);
    t.diagnostic(`${load.produced.length} records; stops took ${stops.join(', ')} ms`);
    assert.deepEqual(lost, []);
    assert.deepEqual(twice, [], 'a rolling restart delivers nothing twice');
    assert.deepEqual(outOfOrder, [], 'per-key order');
    for (const ms of stops) assert.ok(ms < 20_000, `a worker stopped in ${ms} ms (grace 20 s)`);
    const stoppedPids = new Set(original.map((worker) => worker.pid));
    const reasons = readLines(s.file)
      .filter(isEvent)
      .filter((line) => line.event === 'shutdown' && stoppedPids.has(line.pid))
      .map((line) => line.reason);
    assert.ok(reasons.length > 0);
    assert.deepEqual([...new Set(reasons)], ['REQUESTED'], 'every moved processor got shutdown(REQUESTED), never ZOMBIE');
    await s.stop();
    for (const worker of s.fleet.live()) await s.fleet.stop(worker, 'SIGTERM');
  });

  test('SIGKILL of a worker while shards move to a new one: nothing lost, balanced again within 30 s', async (t) => {
    const s = await setUp('kill-rebalance');
    await s.fleet.add(3);
    await s.start();
    const load = produce(context, s.streamName);
    let killedPid = 0;
    try {
      await balanced(s.file, s.fleet);
      const before = readLines(s.file).filter(isEvent).length;
      const [newcomer] = await s.fleet.add(1);
      // Kill an old worker as soon as the first shard lands on the newcomer (a rebalance is under way).
      const deadline = Date.now() + BALANCE_WITHIN_MS;
      while (
        !readLines(s.file)
          .filter(isEvent)
          .slice(before)
          .some((line) => line.event === 'initialize' && line.pid === newcomer!.pid)
      ) {
        if (Date.now() > deadline) throw new Error('no shard moved to the new worker');
        await sleep(50);
      }
      const victim = s.fleet.live().find((worker) => worker.pid !== newcomer!.pid)!;
      killedPid = victim.pid;
      const { exit } = await s.fleet.stop(victim, 'SIGKILL');
      assert.equal(exit.signal, 'SIGKILL');
      const after = await balanced(s.file, s.fleet);
      t.diagnostic(`balanced ${after.ms} ms after the kill`);
    } finally {
      await load.stop();
    }
    await untilAllDelivered(s.file, load.produced);
    const { lost, twice } = deliveries(s.file, load.produced);
    assert.deepEqual(lost, []);
    // Duplicates only of records the killed worker delivered (its batch in flight, after its last checkpoint).
    const killedDelivered = new Set(
      readLines(s.file)
        .filter(isRecord)
        .filter((line) => line.pid === killedPid)
        .map((line) => line.data),
    );
    assert.deepEqual(
      twice.filter((data) => !killedDelivered.has(data)),
      [],
      'only records of the killed worker are delivered again',
    );
    t.diagnostic(`${twice.length} records delivered twice after the SIGKILL`);
    await s.stop();
    for (const worker of s.fleet.live()) await s.fleet.stop(worker, 'SIGTERM');
  });

  test('--max-shards 4 on two workers: 8 shards WAITING_FOR_WORKER; two more workers: all 16 placed within 30 s', async (t) => {
    const s = await setUp('max-shards', ['--max-shards', '4']);
    await s.fleet.add(2);
    await s.start();
    const load = produce(context, s.streamName);
    try {
      // Two workers of 4 each: 8 shards held, none above 4, the other 8 visibly waiting.
      const deadline = Date.now() + 60_000;
      let waiting = 0;
      for (;;) {
        const counts = countsByPid(holders(s.file));
        const status = await s.status();
        waiting = status.shards.filter((shard) => shard.state === 'WAITING_FOR_WORKER').length;
        for (const n of counts.values()) assert.ok(n <= 4, `a worker holds ${n} shards, above --max-shards 4`);
        if ([...counts.values()].reduce((a, b) => a + b, 0) === 8 && waiting === 8) break;
        if (Date.now() > deadline) throw new Error(`expected 8 held and 8 waiting; counts ${JSON.stringify([...counts])}, waiting ${waiting}`);
        await sleep(1_000);
      }
      const added = Date.now();
      await s.fleet.add(2);
      const placed = await balanced(s.file, s.fleet, { cap: 4 });
      t.diagnostic(`all 16 placed ${Date.now() - added} ms after two workers were started (${placed.ms} ms after ready)`);
      for (const n of placed.counts.values()) assert.ok(n <= 4);
    } finally {
      await load.stop();
    }
    await untilAllDelivered(s.file, load.produced);
    const { lost, twice } = deliveries(s.file, load.produced);
    assert.deepEqual(lost, []);
    assert.deepEqual(twice, []);
    await s.stop();
    for (const worker of s.fleet.live()) await s.fleet.stop(worker, 'SIGTERM');
  });
});

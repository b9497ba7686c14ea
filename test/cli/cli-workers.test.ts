/**
 * Two `temporal-kcl worker` processes on one task queue share a stream's shards; one is stopped gracefully (SIGTERM)
 * while records keep coming: it exits 0 within its grace time, its shards are handed over to the other worker (each
 * processor gets shutdown(REQUESTED) with a working checkpointer), and nothing is lost or delivered twice.
 * The processor is a user module (test/fixtures/file-appending-processor.ts) that appends what it sees to a file.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startStreamConsumer, stopStreamConsumer } from '../../src/client/consumers';
import { APPEND_FILE_VARIABLE } from '../fixtures/file-appending-processor';
import { isEvent, isRecord, readLines } from '../helpers/appended-lines';
import { cliEnvironment, type CliProcess, killAllCliProcesses, spawnCli } from '../helpers/cli';
import { createStream, kclTestContext, type KclTestContext, putRecords } from '../helpers/kcl';
import { uniqueName } from '../helpers/stack';

const PROCESSOR = 'test/fixtures/file-appending-processor.ts';
/** The CLI worker's shutdown grace time (createKclWorker's default, DEFAULT_SHUTDOWN_GRACE_TIME_MS). */
const GRACE_MS = 20_000;
const MAX_RECORDS = 10;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));


async function until(what: string, predicate: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(100);
  }
}

describe('temporal-kcl worker processes sharing a stream', () => {
  let context: KclTestContext;
  let dir: string;
  before(async () => {
    context = await kclTestContext();
    dir = mkdtempSync(join(tmpdir(), 'kcl-cli-workers-'));
  });
  after(async () => {
    await killAllCliProcesses();
    await context.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('both workers take shards; SIGTERM one while producing: exit 0, its shards handed over, nothing lost or repeated', async (t) => {
    // Prepare
    const { kinesis, client } = context;
    const streamName = await createStream(kinesis, 4, 'cli-workers');
    const applicationName = uniqueName('cli-workers-app');
    const taskQueue = uniqueName('cli-workers-tq');
    const file = join(dir, 'records.jsonl');
    const env = cliEnvironment(context.stack, { TEMPORAL_KCL_TASK_QUEUE: taskQueue, [APPEND_FILE_VARIABLE]: file });
    const workers: CliProcess[] = [];
    for (let i = 0; i < 2; i++) {
      workers.push(spawnCli(['worker', '--processor', PROCESSOR, '--log-level', 'WARN'], env));
    }
    await Promise.all(workers.map((worker) => worker.waitFor(/temporal-kcl worker \S+ ready/, 90_000)));
    let [stopped, survivor] = workers as [CliProcess, CliProcess];

    const produced: string[] = [];
    let producing = true;
    const producer = (async () => {
      for (let i = 0; producing; i++) {
        const data = `record-${i}`;
        await putRecords(kinesis, streamName, [{ partitionKey: `pk-${i % 16}`, data }]);
        produced.push(data);
        await sleep(10);
      }
    })();

    let exit: Awaited<CliProcess['exited']>;
    let stopMs: number;
    let stoppedAt: number;
    try {
      await startStreamConsumer(client, {
        applicationName,
        streamName,
        taskQueue,
        shardOptions: { initialPosition: 'TRIM_HORIZON', idleTimeBetweenReadsMs: 100, maxRecords: MAX_RECORDS },
      });

      // Act: the workers take the shards. Which worker initializes which shard is Temporal's choice, and now and then
      // one takes all four: the worker to stop is one that holds shards, so that the other takes work either way.
      const pids = () =>
        new Set(
          readLines(file)
            .filter(isRecord)
            .map((line) => line.pid),
        );
      await until('records processed', () => pids().size > 0, 60_000);
      await until('records processed by both worker processes', () => pids().size === 2, 5_000).catch(() => undefined);
      if (!pids().has(stopped.pid)) [stopped, survivor] = [survivor, stopped];

      // Act: stop one worker gracefully while producing continues.
      stoppedAt = Date.now();
      exit = await stopped.kill('SIGTERM');
      stopMs = Date.now() - stoppedAt;
      const producedAtStop = produced.length;
      await until('more records produced after the stop', () => produced.length >= producedAtStop + 100, 60_000);
    } finally {
      producing = false;
      await producer;
    }
    await until(
      'every produced record in the file',
      () => {
        const seen = new Set(
          readLines(file)
            .filter(isRecord)
            .map((line) => line.data),
        );
        return produced.every((data) => seen.has(data));
      },
      60_000,
    );
    await stopStreamConsumer(client, { applicationName, streamName, wait: true });
    const survivorExit = await survivor.kill('SIGTERM');

    // Assess
    const lines = readLines(file);
    const records = lines.filter(isRecord);
    t.diagnostic(
      `worker stopped in ${stopMs!} ms; ${produced.length} records produced, ${records.length} lines written; ` +
        `worker ready output: ${
          survivor
            .stderr()
            .split('\n')
            .find((l) => l.includes('ready')) ?? '?'
        }`,
    );
    assert.deepEqual(exit!, { code: 0, signal: null }, `stopped worker's exit; stderr:\n${stopped.stderr()}`);
    assert.ok(stopMs! < GRACE_MS, `stopped worker exited after ${stopMs!} ms`);
    assert.match(stopped.stderr(), /SIGTERM: shutting down gracefully/);
    assert.match(stopped.stderr(), /worker stopped/);
    assert.deepEqual(survivorExit, { code: 0, signal: null }, survivor.stderr());

    // Both processes took work (the survivor at the latest when the stopped worker's shards moved to it).
    const byPid = (pid: number) => records.filter((line) => line.pid === pid);
    assert.ok(byPid(stopped.pid).length > 0, 'the stopped worker processed records');
    assert.ok(byPid(survivor.pid).length > 0, 'the surviving worker processed records');
    assert.equal(new Set(records.map((line) => line.pid)).size, 2, 'only the two worker processes wrote records');

    // The stopped worker's shards moved to the survivor, each handed over: shutdown(REQUESTED) on the stopped worker
    // (the processor checkpoints there), never ZOMBIE.
    const movedShards = [...new Set(byPid(stopped.pid).map((line) => line.shard))].sort();
    assert.ok(movedShards.length > 0);
    for (const shard of movedShards) {
      assert.ok(
        records.some((line) => line.shard === shard && line.pid === survivor.pid),
        `shard ${shard} continued on the surviving worker`,
      );
      assert.deepEqual(
        lines
          .filter(isEvent)
          .filter((line) => line.pid === stopped.pid && line.shard === shard && line.event === 'shutdown')
          .map((line) => line.reason),
        ['REQUESTED'],
        `the stopped worker's processor of ${shard}`,
      );
    }

    // Nothing lost, nothing delivered twice.
    const seen = new Set(records.map((line) => line.data));
    assert.deepEqual(
      produced.filter((data) => !seen.has(data)),
      [],
      'every produced record processed',
    );
    const counts = new Map<string, number>();
    for (const line of records) counts.set(line.data, (counts.get(line.data) ?? 0) + 1);
    const repeated = [...counts].filter(([, n]) => n > 1).map(([data]) => data);
    const duplicates = repeated.length;
    assert.deepEqual(repeated, [], 'a graceful stop delivers no record twice');
    t.diagnostic(`${duplicates} records delivered twice; shards moved: ${movedShards.join(', ')}`);
  });
});

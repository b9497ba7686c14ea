/**
 * CLI conventions: --version, durations with units, help that shows every default (and the environment's values),
 * `start --options file.json` validated like the library, and `status --check` / `status` without a live worker.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { defaultPayloadConverter } from '@temporalio/common';
import { buildProgram } from '../../src/cli/main';
import { formatDuration, parseDuration } from '../../src/cli/options';
import { renderStatus, type StatusSummary, statusJson, statusProblems } from '../../src/cli/status-view';
import { type StreamStatus, WAITING_FOR_WORKER } from '../../src/client/consumers';
import type { ShardProgress } from '../../src/consumer-types';
import type { FleetView } from '../../src/fleet-types';
import { streamConsumerWorkflowId } from '../../src/ids';
import { validateShardConsumerOptions } from '../../src/options';
import { cliEnvironment, killAllCliProcesses, runCli } from '../helpers/cli';
import {
  createStream,
  kclTestContextForSuite,
  listShards,
  putRecords,
  recordingProcessor,
  testWorker,
} from '../helpers/kcl';
import { uniqueName } from '../helpers/stack';

const root = join(__dirname, '..', '..');

describe('temporal-kcl CLI conventions', () => {
  const context = kclTestContextForSuite({ beforeClose: killAllCliProcesses });
  const dir = mkdtempSync(join(tmpdir(), 'kcl-cli-'));

  test('--version prints the package version', async () => {
    const run = await runCli(['--version'], cliEnvironment(context.stack));
    const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout.trim(), version);
  });

  test('durations take 500ms / 2s / 1m / 1h; a bare number is refused with the units shown', async () => {
    assert.deepEqual(['500ms', '2s', '1m', '1h', '1.5s'].map(parseDuration), [500, 2_000, 60_000, 3_600_000, 1_500]);
    assert.deepEqual([500, 2_000, 60_000, 1_500].map(formatDuration), ['500ms', '2s', '1m', '1500ms']);
    for (const bad of ['5', '10 s', 'fast', '-1s', '']) {
      assert.throws(
        () => parseDuration(bad),
        /expected a duration with a unit: ms, s, m or h \(e\.g\. 500ms, 2s, 1m, 1h\)/,
      );
    }
    assert.throws(() => parseDuration('30'), /a bare number has no unit: write 30ms or 30s/);
    const run = await runCli(['stop', '--app', 'a', '--stream', 's', '--timeout', '30'], cliEnvironment(context.stack));
    assert.equal(run.code, 1);
    assert.match(run.stderr, /--timeout.*'30' is invalid.*500ms, 2s, 1m/s, run.stderr);
  });

  test('help shows every default, the environment variable of each option, and its current value (secrets masked)', async () => {
    const program = buildProgram();
    const env = cliEnvironment(context.stack, {
      TEMPORAL_API_KEY: 'super-secret',
      TEMPORAL_KCL_TASK_QUEUE: 'from-env-tq',
    });
    for (const command of program.commands) {
      const run = await runCli([command.name(), '--help'], env);
      assert.equal(run.code, 0, run.stderr);
      const help = run.stdout.replace(/\n\s{20,}/g, ' ');
      for (const option of command.options) {
        const line = help.split('\n').find((l) => l.trimStart().startsWith(option.flags));
        assert.ok(line, `${command.name()} --help lists ${option.flags}`);
        if (!option.isBoolean() && !option.mandatory && option.long !== '--help') {
          assert.match(line, /default/, `${command.name()} ${option.flags} shows its default: ${line}`);
        }
        if (option.envVar) assert.match(line, new RegExp(`env: ${option.envVar}`), line);
      }
      if (command.options.some((o) => o.envVar === 'TEMPORAL_KCL_TASK_QUEUE')) {
        assert.match(help, /now TEMPORAL_KCL_TASK_QUEUE=from-env-tq/);
        assert.match(help, /now TEMPORAL_API_KEY=\*\*\*/);
        assert.doesNotMatch(help, /super-secret/);
      }
    }
  });

  test('start --options file.json: validated with the library schema and its messages; flags win over the file', async () => {
    const env = cliEnvironment(context.stack, { TEMPORAL_KCL_TASK_QUEUE: uniqueName('opts-tq') });
    const file = (name: string, content: string) => {
      const path = join(dir, name);
      writeFileSync(path, content);
      return path;
    };
    const bad = { maxRecrods: 10, maxRecords: 0, onProcessingFailure: 'SKIP' };
    const expected = validateShardConsumerOptions(bad);
    assert.ok(!expected.ok);
    const run = await runCli(
      ['start', '--app', 'a', '--stream', 's', '--options', file('bad.json', JSON.stringify(bad))],
      env,
    );
    assert.equal(run.code, 1);
    assert.equal(run.stdout, '');
    for (const issue of expected.issues) assert.ok(run.stderr.includes(issue), `${issue} in ${run.stderr}`);
    assert.match(run.stderr, /--options \S+bad\.json: invalid shard options/);

    const notJson = await runCli(
      ['start', '--app', 'a', '--stream', 's', '--options', file('x.json', '{maxRecords: 1')],
      env,
    );
    assert.match(notJson.stderr, /--options \S+x\.json: not valid JSON/);
    const missing = await runCli(['start', '--app', 'a', '--stream', 's', '--options', join(dir, 'nope.json')], env);
    assert.match(missing.stderr, /--options \S+nope\.json: cannot read it \(ENOENT\)/);
    // A flag's own value goes through the same schema.
    const flagged = await runCli(
      ['start', '--app', 'a', '--stream', 's', '--on-processing-failure', 'DEAD_LETTER'],
      env,
    );
    assert.match(
      flagged.stderr,
      /invalid shard options: .*onProcessingFailure DEAD_LETTER needs a deadLetter destination/,
    );

    // A good file plus flags: the workflow's input carries both, flags winning.
    const streamName = await createStream(context.kinesis, 1, 'cli-opts');
    const applicationName = uniqueName('opts-app');
    const good = file(
      'good.json',
      JSON.stringify({ maxRecords: 500, idleTimeBetweenReadsMs: 2_000, initialPosition: 'TRIM_HORIZON' }),
    );
    const started = await runCli(
      [
        'start',
        '--app',
        applicationName,
        '--stream',
        streamName,
        '--options',
        good,
        '--max-records',
        '250',
        '--heartbeat-timeout',
        '3s',
      ],
      env,
    );
    assert.equal(started.code, 0, started.stderr);
    const handle = context.client.workflow.getHandle(streamConsumerWorkflowId(applicationName, streamName));
    const history = await handle.fetchHistory();
    const payload = history.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
    assert.ok(payload);
    const input = defaultPayloadConverter.fromPayload<{ shardOptions: Record<string, unknown> }>(payload);
    assert.deepEqual(input.shardOptions, {
      maxRecords: 250,
      idleTimeBetweenReadsMs: 2_000,
      initialPosition: 'TRIM_HORIZON',
      heartbeatTimeoutMs: 3_000,
    });
    await handle.terminate('test done');
  });

  test('status --check: the unhealthy states and the lag limit', () => {
    const row = (shardId: string, state: string, millisBehindLatest: number | null) => ({
      shardId,
      state,
      checkpoint: '-',
      lastProcessed: '-',
      records: 0,
      bytes: 0,
      millisBehindLatest,
      deaggregationFailures: 0,
      deadLetteredRecords: 0,
      worker: null,
      restarts: 0,
    });
    const summary = (rows: ReturnType<typeof row>[]): StatusSummary => ({
      applicationName: 'a',
      streamName: 's',
      state: 'RUNNING',
      shardConsumersStarted: rows.length,
      shardConsumersRestarted: 0,
      retrieval: { type: 'polling' },
      source: 'queries',
      totals: { records: 0, bytes: 0 },
      shards: rows,
      workers: [],
      waiting: rows.filter((r) => r.state === WAITING_FOR_WORKER).length,
    });
    assert.deepEqual(
      statusProblems(summary([row('s0', 'PROCESSING', 10), row('s1', 'ENDED (TERMINATE)', null)]), 1_000),
      [],
    );
    assert.deepEqual(
      statusProblems(
        summary([row('s0', 'HALTED', 0), row('s1', WAITING_FOR_WORKER, null), row('s2', 'PROCESSING', 1_001)]),
        1_000,
      ),
      ['s0 is HALTED', 's1 is WAITING_FOR_WORKER', 's2 is 1001 ms behind (more than --max-behind 1000 ms)'],
    );
  });

  test('status: the worker of each shard from its lease item, one row per worker, waiting shards counted', () => {
    const at = 1_000_000_000;
    const shard = (shardId: string, state: string, worker?: string): StreamStatus['shards'][number] => ({
      shardId,
      workflowId: `wf/${shardId}`,
      state: state === 'ENDED' ? 'ENDED' : 'RUNNING',
      ...(state === 'ENDED' ? { reason: 'TERMINATE' as const } : {}),
      progress: {
        applicationName: 'a',
        streamName: 's',
        shardId,
        state: state as ShardProgress['state'],
        parentShardIds: [],
        counters: {} as ShardProgress['counters'],
        recentDeaggregationFailures: [],
        recentDeadLetters: [],
        run: 0,
        ...(worker ? { worker } : {}),
      },
    });
    const status: StreamStatus = {
      stream: { applicationName: 'a', streamName: 's', state: 'RUNNING', shards: [], started: 5, restarts: 0, run: 0 },
      shards: [
        shard('s0', 'PROCESSING', 'tq@old'),
        shard('s1', 'PROCESSING', 'tq@a'),
        shard('s2', 'PROCESSING'),
        shard('s3', WAITING_FOR_WORKER, 'tq@gone'),
        shard('s4', 'ENDED'),
      ],
      source: 'queries',
    };
    const fleet: FleetView = {
      at,
      workers: [
        { workerQueue: 'tq@a', identity: 'a', lastAccessTime: at - 5_000, maxShards: 2 },
        { workerQueue: 'tq@b', identity: 'b', lastAccessTime: at - 1_000 },
        { workerQueue: 'tq@idle', identity: 'idle', lastAccessTime: at - 80_000 },
      ],
      shards: [
        // s0 moved to a since the consumer last said; s3 waits (its lease still names a gone worker); s4 ended.
        { shardId: 's0', worker: 'tq@a', kbps: 1.5, recordsPerSec: 10, reportedAt: at, ended: false },
        { shardId: 's1', worker: 'tq@a', kbps: 0.5, recordsPerSec: 2, reportedAt: at, ended: false },
        { shardId: 's2', worker: 'tq@b', kbps: 4, recordsPerSec: 8, reportedAt: at, ended: false },
        { shardId: 's3', worker: 'tq@gone', kbps: 9, ended: false },
        { shardId: 's4', worker: 'tq@b', ended: true },
        // Another stream's item in a multi-stream table: not this stream's s1.
        { shardId: '1:other:1:s1', worker: 'tq@b', kbps: 100, ended: false },
      ],
    };
    const summary = statusJson(status, fleet);
    assert.deepEqual(
      summary.shards.map((row) => [row.shardId, row.worker, row.kbps ?? null, row.recordsPerSec ?? null]),
      [
        ['s0', 'tq@a', 1.5, 10],
        ['s1', 'tq@a', 0.5, 2],
        ['s2', 'tq@b', 4, 8],
        ['s3', null, null, null],
        ['s4', null, null, null],
      ],
    );
    assert.deepEqual(summary.workers, [
      { worker: 'tq@a', live: true, shards: 2, maxShards: 2, recordsPerSec: 12, kbps: 2 },
      { worker: 'tq@b', live: true, shards: 1, maxShards: null, recordsPerSec: 8, kbps: 4 },
      { worker: 'tq@idle', live: false, shards: 0, maxShards: null, recordsPerSec: 0, kbps: 0 },
    ]);
    assert.equal(summary.waiting, 1);
    const text = renderStatus(summary);
    assert.match(text, /worker\s*│\s*live\s*│\s*shards\s*│\s*max\s*│\s*records\/s\s*│\s*KB\/s/);
    assert.match(text, /│ a\s*│ yes\s*│ 2\s*│ 2\s*│ 12\.0\s*│ 2\.0\s*│/);
    assert.match(text, /│ idle\s*│ no\s*│ 0\s*│ -\s*│ 0\.0\s*│ 0\.0\s*│/);
    assert.match(text, /^1 waiting for a worker$/m);

    // Without the fleet view: the consumers' own word, and a row per worker they name (liveness unknown).
    const bare = statusJson(status);
    assert.deepEqual(
      bare.shards.map((row) => row.worker),
      ['tq@old', 'tq@a', null, null, null],
    );
    assert.deepEqual(
      bare.workers.map((row) => [row.worker, row.live, row.shards]),
      [
        ['tq@a', null, 1],
        ['tq@old', null, 1],
      ],
    );
  });

  test('status without a live worker: states from search attributes, checkpoints from the lease table; --check fails', async () => {
    const streamName = await createStream(context.kinesis, 2, 'cli-noworker');
    const shardIds = (await listShards(context.kinesis, streamName)).map((shard) => shard.ShardId!).sort();
    const applicationName = uniqueName('noworker-app');
    const taskQueue = uniqueName('noworker-tq');
    const env = cliEnvironment(context.stack, { TEMPORAL_KCL_TASK_QUEUE: taskQueue });
    const consumer = ['--app', applicationName, '--stream', streamName];
    const { factory, recording } = recordingProcessor();
    const worker = await testWorker(context, { processors: { default: factory }, taskQueue });
    let live: StatusSummary | undefined;
    await worker.runUntil(
      (async () => {
        assert.equal((await runCli(['start', ...consumer, '--initial-position', 'TRIM_HORIZON'], env)).code, 0);
        await putRecords(
          context.kinesis,
          streamName,
          Array.from({ length: 20 }, (_, i) => ({ partitionKey: `pk-${i}`, data: `r${i}` })),
        );
        await recording.until((r) => r.records.length >= 20);
        const deadline = Date.now() + 15_000;
        let check;
        do {
          check = await runCli(['status', ...consumer, '--json', '--check', '--max-behind', '1h'], env);
          live = JSON.parse(check.stdout) as StatusSummary;
        } while (live.totals.records < 20 && Date.now() < deadline);
        assert.equal(check.code, 0, check.stderr);
        assert.equal(live.source, 'queries');
        assert.deepEqual(
          live.workers.filter((row) => row.shards > 0).map((row) => [row.worker, row.shards]),
          [[worker.workerQueue, shardIds.length]],
        );
        assert.equal(live.waiting, 0);
      })(),
    );
    // The worker is gone: nothing answers queries now.
    const started = Date.now();
    const run = await runCli(['status', ...consumer, '--json'], env);
    assert.equal(run.code, 0, run.stderr);
    const status = JSON.parse(run.stdout) as StatusSummary;
    assert.equal(status.source, 'search-attributes-and-lease-table');
    assert.deepEqual(
      status.shards.map((r) => r.shardId),
      shardIds,
    );
    for (const shardRow of status.shards) {
      assert.equal(shardRow.state, WAITING_FOR_WORKER);
      assert.equal(shardRow.lastKnownState, 'PROCESSING');
      const before = live?.shards.find((r) => r.shardId === shardRow.shardId);
      assert.equal(shardRow.checkpoint, before?.checkpoint, `${shardRow.shardId}: the lease table's checkpoint`);
    }
    // Waiting shards are on no worker, whatever their lease items last said.
    assert.equal(status.waiting, shardIds.length);
    assert.deepEqual(
      status.workers.filter((row) => row.shards > 0),
      [],
    );
    assert.ok(Date.now() - started < 30_000, `status answered in ${Date.now() - started} ms`);
    const table = await runCli(['status', ...consumer], env);
    assert.match(
      table.stdout,
      /no worker answered: states from the KclState search attribute, checkpoints from the lease table/,
    );
    assert.match(table.stdout, new RegExp(`^${shardIds.length} waiting for a worker$`, 'm'));

    const check = await runCli(['status', ...consumer, '--check'], env);
    assert.equal(check.code, 1);
    for (const shardId of shardIds)
      assert.match(check.stderr, new RegExp(`unhealthy: ${shardId} is WAITING_FOR_WORKER`));
    await context.client.workflow
      .getHandle(streamConsumerWorkflowId(applicationName, streamName))
      .terminate('test done');
  });
});

/**
 * The consumer commands of the `temporal-kcl` CLI, run as subprocesses against the test stack: `start` a consumer that a
 * worker in this process serves, `status` (JSON and table) agrees with what the processor saw, `stop` ends every shard
 * consumer with shutdown(REQUESTED).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ShardConsumerResult } from '../../src/consumer-types';
import { shardConsumerWorkflowId, streamConsumerWorkflowId } from '../../src/ids';
import type { statusJson } from '../../src/cli/status-view';
import { CheckpointTable } from '../../src/checkpoint/checkpoint-table';
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

type StatusJson = ReturnType<typeof statusJson>;

const RECORDS = 40;

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

describe('temporal-kcl start / status / stop', () => {
  const context = kclTestContextForSuite({ beforeClose: killAllCliProcesses });

  test('start consumes every shard; status agrees with the processor; stop ends each shard with REQUESTED', async (t) => {
    // Prepare
    const { kinesis, client } = context;
    const streamName = await createStream(kinesis, 2, 'cli-stream');
    const shardIds = (await listShards(kinesis, streamName)).map((shard) => shard.ShardId!);
    const applicationName = uniqueName('cli-app');
    const taskQueue = uniqueName('cli-tq');
    const env = cliEnvironment(context.stack, { TEMPORAL_KCL_TASK_QUEUE: taskQueue });
    const { factory, recording } = recordingProcessor();
    const worker = await testWorker(context, { processors: { default: factory }, taskQueue });
    const consumer = ['--app', applicationName, '--stream', streamName];
    const timings: string[] = [];

    await worker.runUntil(
      (async () => {
        // Act: start
        const start = await runCli(['start', ...consumer, '--initial-position', 'TRIM_HORIZON'], env);
        timings.push(`start ${start.durationMs} ms`);
        assert.equal(start.code, 0, start.stderr);
        assert.match(
          start.stdout,
          new RegExp(`started ${streamConsumerWorkflowId(applicationName, streamName)} on task queue ${taskQueue}`),
        );

        // A second start of the same consumer is refused, naming the running one.
        const again = await runCli(['start', ...consumer, '--initial-position', 'TRIM_HORIZON'], env);
        assert.equal(again.code, 1, again.stdout);
        assert.match(
          again.stderr,
          new RegExp(`already running as workflow ${streamConsumerWorkflowId(applicationName, streamName)}`),
        );

        const puts = await putRecords(
          kinesis,
          streamName,
          Array.from({ length: RECORDS }, (_, i) => ({ partitionKey: `pk-${i % 10}`, data: `record-${i}` })),
        );
        await recording.until((r) => r.records.length >= RECORDS, 60_000);
        assert.deepEqual(recording.records.map((r) => r.text).sort(), puts.map((_, i) => `record-${i}`).sort());

        // Assess: status --json (polled until its counters caught up with the processor, which they follow by a step)
        let status: StatusJson | undefined;
        const deadline = Date.now() + 15_000;
        do {
          const run = await runCli(['status', ...consumer, '--json'], env);
          timings.push(`status --json ${run.durationMs} ms`);
          assert.equal(run.code, 0, run.stderr);
          status = JSON.parse(run.stdout) as StatusJson;
        } while (status.totals.records < RECORDS && Date.now() < deadline);
        assert.equal(status.applicationName, applicationName);
        assert.equal(status.streamName, streamName);
        assert.equal(status.state, 'RUNNING');
        assert.equal(status.shardConsumersStarted, shardIds.length);
        assert.equal(status.totals.records, RECORDS);
        assert.deepEqual(status.shards.map((row) => row.shardId).sort(), [...shardIds].sort());
        for (const row of status.shards) {
          const seen = recording.records.filter((r) => r.shardId === row.shardId);
          assert.ok(seen.length > 0, `records put into ${row.shardId}`);
          const last = seen.at(-1)!;
          // A plain record's position is its sequence number; a user record of an aggregate adds /subSequenceNumber.
          const position =
            last.subSequenceNumber === undefined
              ? last.sequenceNumber
              : `${last.sequenceNumber}/${last.subSequenceNumber}`;
          assert.deepEqual(
            {
              records: row.records,
              lastProcessed: row.lastProcessed,
              checkpoint: row.checkpoint,
              state: row.state,
              error: row.error,
            },
            {
              records: seen.length,
              lastProcessed: position,
              checkpoint: position,
              state: 'PROCESSING',
              error: undefined,
            },
            `status of ${row.shardId}`,
          );
          assert.equal(row.worker, worker.workerQueue);
        }

        // Assess: the per-worker summary agrees with the lease table (each item names its worker: the load reports)
        const leases = new CheckpointTable({ dynamoDb: context.dynamoDb, tableName: applicationName });
        const reported = await waitFor('both lease items to name the worker', async () => {
          const items = await leases.listLeaseReports();
          return items.every((item) => item.report.worker !== undefined) ? items : undefined;
        });
        const perWorker = new Map<string, number>();
        for (const item of reported) perWorker.set(item.report.worker!, (perWorker.get(item.report.worker!) ?? 0) + 1);
        const withWorkers = JSON.parse((await runCli(['status', ...consumer, '--json'], env)).stdout) as StatusJson;
        assert.deepEqual(
          withWorkers.workers.filter((row) => row.shards > 0).map((row) => [row.worker, row.shards]),
          [...perWorker.entries()],
          'shards per worker: status and the lease table',
        );
        const me = withWorkers.workers.find((row) => row.worker === worker.workerQueue);
        assert.equal(me?.live, true);
        assert.equal(me?.shards, shardIds.length);
        assert.equal(me?.maxShards, null);
        assert.equal(withWorkers.waiting, 0);
        for (const row of withWorkers.shards) assert.equal(row.worker, worker.workerQueue, `worker of ${row.shardId}`);

        // Assess: the status table has a row per shard
        const table = await runCli(['status', ...consumer], env);
        timings.push(`status ${table.durationMs} ms`);
        assert.equal(table.code, 0, table.stderr);
        assert.match(
          table.stdout,
          new RegExp(
            `^${applicationName} / ${streamName}: RUNNING, ${shardIds.length} shards, ${RECORDS} records$`,
            'm',
          ),
        );
        for (const shardId of shardIds) {
          const rows = table.stdout.split('\n').filter((line) => line.includes(shardId));
          assert.equal(rows.length, 1, `one row for ${shardId}:\n${table.stdout}`);
          const count = recording.records.filter((r) => r.shardId === shardId).length;
          assert.match(rows[0]!, new RegExp(`│ PROCESSING\\s+│.*│ ${count}\\s+│`));
        }
        // ... and a row for the worker: live, both shards, no cap
        const identity = worker.workerQueue.replace(/^.*@/, '');
        assert.match(table.stdout, /│ worker\s+│ live\s+│ shards\s+│ max\s+│ records\/s\s+│ KB\/s\s+│/);
        assert.match(table.stdout, new RegExp(`│ ${identity}\\s+│ yes\\s+│ ${shardIds.length}\\s+│ -\\s+│`));
        assert.match(table.stdout, /^0 waiting for a worker$/m);

        // Act: stop
        const stop = await runCli(['stop', ...consumer], env);
        timings.push(`stop ${stop.durationMs} ms`);
        assert.equal(stop.code, 0, stop.stderr);
        assert.match(
          stop.stdout,
          new RegExp(
            `stopped ${streamConsumerWorkflowId(applicationName, streamName)}: ${shardIds.length} shard consumers started in all \\(REQUESTED: ${shardIds.length}\\)`,
          ),
        );

        // Assess: a stopped consumer's status (workflows are queried while the worker still runs)
        const stopped = await runCli(['status', ...consumer, '--json'], env);
        assert.equal(stopped.code, 0, stopped.stderr);
        const final = JSON.parse(stopped.stdout) as StatusJson;
        assert.equal(final.state, 'ENDED');
        assert.equal(final.totals.records, RECORDS);
        const running = status;
        for (const row of final.shards) {
          const earlier = running.shards.find((r) => r.shardId === row.shardId);
          assert.deepEqual(
            { state: row.state, records: row.records, checkpoint: row.checkpoint },
            { state: 'ENDED (REQUESTED)', records: earlier?.records, checkpoint: earlier?.checkpoint },
            `final status of ${row.shardId}`,
          );
        }
      })(),
    );
    t.diagnostic(timings.join(', '));

    // Assess: every shard consumer ended with REQUESTED, and the processor was told so once per shard
    for (const shardId of shardIds) {
      assert.deepEqual(
        recording.shutdowns.filter((s) => s.shardId === shardId).map((s) => s.reason),
        ['REQUESTED'],
        `shutdowns of ${shardId}`,
      );
      const handle = client.workflow.getHandle<() => Promise<ShardConsumerResult>>(
        shardConsumerWorkflowId(applicationName, streamName, shardId),
      );
      const { status } = await handle.describe();
      assert.equal(status.name, 'COMPLETED', `consumer of ${shardId}`);
      const result = await handle.result();
      assert.equal(result.reason, 'REQUESTED');
      assert.equal(result.counters.recordsProcessed, recording.records.filter((r) => r.shardId === shardId).length);
    }
    const stream = await client.workflow.getHandle(streamConsumerWorkflowId(applicationName, streamName)).describe();
    assert.equal(stream.status.name, 'COMPLETED');
  });
});

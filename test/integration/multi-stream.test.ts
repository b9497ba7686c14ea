/**
 * Several streams under one application. A single-stream lease table (lease key = shard id, Java KCL's default) serves
 * one stream: a second stream is refused instead of fighting over `shardId-000000000000`. With `multiStream`, streams
 * share a table in Java KCL's multi-stream layout (`<account>:<stream>:<creation epoch>:<shard id>`, with `streamName`
 * and `shardId` attributes), each with its own leases. A start that would mix the two layouts in one table is refused.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ScanCommand } from '@aws-sdk/client-dynamodb';
import { DescribeStreamSummaryCommand } from '@aws-sdk/client-kinesis';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { startStreamConsumer, stopStreamConsumer } from '../../src/client/consumers';
import type { streamConsumerWorkflow } from '../../src/workflows/stream-consumer';
import { cliEnvironment, killAllCliProcesses, runCli } from '../helpers/cli';
import { createStream, kclTestContextForSuite, putRecords, recordingProcessor, testWorker } from '../helpers/kcl';
import { uniqueName } from '../helpers/stack';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const SHARD = 'shardId-000000000000';

/** The innermost message of a failure chain. */
function innermost(error: unknown): string {
  let message = error instanceof Error ? error.message : String(error);
  for (let cause = error instanceof Error ? error.cause : undefined; cause instanceof Error; cause = cause.cause) {
    message = cause.message;
  }
  return message;
}

/** The workflow's failure message once it fails, or 'RUNNING' / 'COMPLETED' if it has not failed within `ms`. */
async function failureWithin(handle: WorkflowHandle<typeof streamConsumerWorkflow>, ms: number): Promise<string> {
  const outcome = await Promise.race([
    handle.result().then(
      () => 'COMPLETED',
      (error: unknown) => (error instanceof WorkflowFailedError ? `FAILED: ${innermost(error)}` : String(error)),
    ),
    sleep(ms).then(() => 'RUNNING'),
  ]);
  return outcome;
}

describe('several streams under one application', () => {
  const context = kclTestContextForSuite({ beforeClose: killAllCliProcesses });

  async function scanTable(tableName: string) {
    return (await context.dynamoDb.send(new ScanCommand({ TableName: tableName, ConsistentRead: true }))).Items ?? [];
  }

  test('without --multi-stream, a second stream on the same single-stream table is refused; the first keeps its lease', async () => {
    // Prepare
    const applicationName = uniqueName('app');
    const taskQueue = uniqueName('tq');
    const first = await createStream(context.kinesis, 1, 'first');
    const second = await createStream(context.kinesis, 1, 'second');
    const { factory, recording } = recordingProcessor();
    const worker = await testWorker(context, { processors: { default: factory }, taskQueue });
    const shardOptions = { initialPosition: 'TRIM_HORIZON' as const, idleTimeBetweenReadsMs: 100 };

    const outcome = await worker.runUntil(
      (async () => {
        await startStreamConsumer(context.client, { applicationName, streamName: first, taskQueue, shardOptions });
        await putRecords(context.kinesis, first, [{ partitionKey: 'k', data: 'first-1' }]);
        await recording.until((r) => r.records.some((record) => record.text === 'first-1'), 20_000);

        // Act: the same application on a second stream, through the client API, then through the CLI.
        const secondHandle = await startStreamConsumer(context.client, {
          applicationName,
          streamName: second,
          taskQueue,
          shardOptions,
        });
        await putRecords(context.kinesis, second, [{ partitionKey: 'k', data: 'second-1' }]);
        const secondOutcome = await failureWithin(secondHandle, 10_000);
        const cli = await runCli(
          ['start', '--app', applicationName, '--stream', second, '--initial-position', 'TRIM_HORIZON'],
          cliEnvironment(context.stack, { TEMPORAL_KCL_TASK_QUEUE: taskQueue }),
        );
        await putRecords(context.kinesis, first, [{ partitionKey: 'k', data: 'first-2' }]);
        const firstGoesOn = await recording
          .until((r) => r.records.some((record) => record.text === 'first-2'), 20_000)
          .then(
            () => true,
            () => false,
          );
        const items = await scanTable(applicationName);
        if (secondOutcome === 'RUNNING')
          await stopStreamConsumer(context.client, { applicationName, streamName: second });
        const result = await stopStreamConsumer(context.client, { applicationName, streamName: first, wait: true });
        return { cli, secondOutcome, firstGoesOn, items, result };
      })(),
    );

    // Assess
    const zombies = recording.shutdowns.filter((shutdown) => shutdown.reason === 'ZOMBIE').length;
    const fromSecond = recording.records.filter((record) => record.text.startsWith('second')).length;
    console.log(
      `second stream: CLI exit ${outcome.cli.code} (${outcome.cli.stderr.trim().slice(0, 160)}); API start ${outcome.secondOutcome.slice(0, 200)}; ` +
        `ZOMBIE shutdowns ${zombies}; records of the second stream delivered ${fromSecond}; first stream restarts ${outcome.result?.restarts}; ` +
        `table items ${outcome.items.length}`,
    );
    assert.equal(outcome.cli.code, 1, 'the CLI refuses the second stream');
    assert.match(outcome.cli.stderr, new RegExp(`held by the consumer of stream ${first}`));
    assert.match(outcome.secondOutcome, new RegExp(`^FAILED: .*held by the consumer of stream ${first}`));
    assert.equal(zombies, 0, 'the first stream never lost its lease');
    assert.equal(fromSecond, 0);
    assert.equal(outcome.firstGoesOn, true);
    assert.equal(outcome.result?.restarts, 0);
    // The single-stream table is exactly as Java KCL's: one item, key = the shard id, no multi-stream attributes.
    assert.equal(outcome.items.length, 1);
    assert.equal(outcome.items[0]?.leaseKey?.S, SHARD);
    assert.equal(outcome.items[0]?.streamName, undefined);
    assert.equal(outcome.items[0]?.shardId, undefined);
  });

  test("with --multi-stream, two streams share one table, each with its own leases in Java KCL's multi-stream layout", async () => {
    // Prepare
    const applicationName = uniqueName('app');
    const taskQueue = uniqueName('tq');
    const streams = [
      await createStream(context.kinesis, 1, 'multi-a'),
      await createStream(context.kinesis, 1, 'multi-b'),
    ];
    const { factory, recording } = recordingProcessor();
    const worker = await testWorker(context, { processors: { default: factory }, taskQueue });

    const outcome = await worker.runUntil(
      (async () => {
        for (const streamName of streams) {
          await startStreamConsumer(context.client, {
            applicationName,
            streamName,
            taskQueue,
            multiStream: true,
            shardOptions: { initialPosition: 'TRIM_HORIZON', idleTimeBetweenReadsMs: 100 },
          });
        }
        const puts = [];
        for (const streamName of streams) {
          puts.push((await putRecords(context.kinesis, streamName, [{ partitionKey: 'k', data: streamName }]))[0]!);
        }
        const delivered = await recording
          .until((r) => streams.every((s) => r.records.some((record) => record.text === s)), 30_000)
          .then(
            () => true,
            () => false,
          );
        const results = [];
        for (const streamName of streams) {
          results.push(await stopStreamConsumer(context.client, { applicationName, streamName, wait: true }));
        }
        return { delivered, puts, results, items: await scanTable(applicationName) };
      })(),
    );

    // Assess
    const keys = outcome.items.map((item) => item.leaseKey?.S).sort();
    console.log(
      `multi-stream table keys: ${keys.join(', ')}; ZOMBIE shutdowns ${recording.shutdowns.filter((s) => s.reason === 'ZOMBIE').length}`,
    );
    assert.equal(outcome.delivered, true, 'both streams consumed');
    assert.deepEqual(
      recording.shutdowns.map((shutdown) => shutdown.reason),
      ['REQUESTED', 'REQUESTED'],
    );
    assert.equal(outcome.items.length, 2, 'one lease per stream');
    for (const [i, streamName] of streams.entries()) {
      const summary = (await context.kinesis.send(new DescribeStreamSummaryCommand({ StreamName: streamName })))
        .StreamDescriptionSummary!;
      const account = summary.StreamARN!.split(':')[4];
      const epoch = Math.floor(summary.StreamCreationTimestamp!.getTime() / 1000);
      const identifier = `${account}:${streamName}:${epoch}`;
      assert.equal(account, '000000000000');
      const item = outcome.items.find((candidate) => candidate.leaseKey?.S === `${identifier}:${SHARD}`);
      assert.ok(item, `a lease keyed ${identifier}:${SHARD} (keys: ${keys.join(', ')})`);
      assert.equal(item.streamName?.S, identifier, 'streamName holds the stream identifier, as Java KCL writes it');
      assert.equal(item.shardId?.S, SHARD);
      assert.equal(item.checkpoint?.S, outcome.puts[i]?.sequenceNumber, `${streamName} checkpointed at its own record`);
      assert.deepEqual(outcome.results[i]?.ended, { REQUESTED: 1 });
    }
  });

  test('a start that would mix the two layouts in one table is refused, naming the conflict', async () => {
    // Prepare: a single-stream table (one stream consumed to its first checkpoint) and a multi-stream one.
    const taskQueue = uniqueName('tq');
    const { factory, recording } = recordingProcessor();
    const worker = await testWorker(context, { processors: { default: factory }, taskQueue });
    const single = uniqueName('single-app');
    const multi = uniqueName('multi-app');
    const streams = {
      single: await createStream(context.kinesis, 1, 'mix-single'),
      multi: await createStream(context.kinesis, 1, 'mix-multi'),
      other: await createStream(context.kinesis, 1, 'mix-other'),
    };
    const shardOptions = { initialPosition: 'TRIM_HORIZON' as const, idleTimeBetweenReadsMs: 100 };

    const outcome = await worker.runUntil(
      (async () => {
        await putRecords(context.kinesis, streams.single, [{ partitionKey: 'k', data: 's' }]);
        await putRecords(context.kinesis, streams.multi, [{ partitionKey: 'k', data: 'm' }]);
        await startStreamConsumer(context.client, {
          applicationName: single,
          streamName: streams.single,
          taskQueue,
          shardOptions,
        });
        await startStreamConsumer(context.client, {
          applicationName: multi,
          streamName: streams.multi,
          taskQueue,
          multiStream: true,
          shardOptions,
        });
        await recording.until((r) => r.records.length >= 2, 20_000);
        await stopStreamConsumer(context.client, { applicationName: single, streamName: streams.single, wait: true });
        await stopStreamConsumer(context.client, { applicationName: multi, streamName: streams.multi, wait: true });

        // Act: a multi-stream start on the single-stream table, a single-stream start on the multi-stream table.
        const multiOnSingle = await startStreamConsumer(context.client, {
          applicationName: single,
          streamName: streams.other,
          tableName: single,
          taskQueue,
          multiStream: true,
          shardOptions,
        });
        const singleOnMulti = await startStreamConsumer(context.client, {
          applicationName: uniqueName('app'),
          streamName: streams.other,
          tableName: multi,
          taskQueue,
          shardOptions,
        });
        return {
          multiOnSingle: await failureWithin(multiOnSingle, 10_000),
          singleOnMulti: await failureWithin(singleOnMulti, 10_000),
          singleItems: await scanTable(single),
          multiItems: await scanTable(multi),
        };
      })(),
    );

    // Assess
    console.log(`multi-stream on a single-stream table: ${outcome.multiOnSingle}`);
    console.log(`single-stream on a multi-stream table: ${outcome.singleOnMulti}`);
    assert.match(outcome.multiOnSingle, /^FAILED: lease table .* holds 1 single-stream lease\(s\).*never mix/);
    assert.match(
      outcome.singleOnMulti,
      new RegExp(`^FAILED: lease table .* holds multi-stream leases \\(of ${streams.multi}\\)`),
    );
    // Nothing was written into either table by the refused starts.
    assert.deepEqual(
      outcome.singleItems.map((item) => item.leaseKey?.S),
      [SHARD],
    );
    assert.equal(outcome.multiItems.length, 1);
  });
});

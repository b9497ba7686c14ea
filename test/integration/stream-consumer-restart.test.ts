/**
 * The stream consumer keeps every shard consumed, as KCL's lease auditor does: a shard consumer that ends as a ZOMBIE
 * (its lease was taken) or fails is started again, with backoff, and the restart shows in the stream's progress. Only
 * shard end (TERMINATE, ALREADY_ENDED) or a stop of the stream consumer ends a shard for good.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CheckpointTable } from '../../src/checkpoint/checkpoint-table';
import { startStreamConsumer, stopStreamConsumer } from '../../src/client/consumers';
import { shardConsumerWorkflowId, streamConsumerWorkflowId } from '../../src/ids';
import type { RecordProcessorFactory } from '../../src/record-processor';
import {
  stopSignal,
  streamConsumerWorkflow,
  type StreamProgress,
  streamProgressQuery,
} from '../../src/workflows/stream-consumer';
import {
  createStream,
  firstShardId,
  kclTestContextForSuite,
  putRecords,
  recordingProcessor,
  testWorker,
} from '../helpers/kcl';
import { uniqueName } from '../helpers/stack';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('stream consumer restarts shard consumers that end before their shard does', () => {
  const context = kclTestContextForSuite();

  async function streamProgressWhen(
    applicationName: string,
    streamName: string,
    predicate: (progress: StreamProgress) => boolean,
    timeoutMs = 20_000,
  ): Promise<StreamProgress> {
    const handle = context.client.workflow.getHandle(`temporal-kcl/${applicationName}/${streamName}`);
    const deadline = Date.now() + timeoutMs;
    let progress = await handle.query(streamProgressQuery);
    while (!predicate(progress) && Date.now() < deadline) {
      await sleep(100);
      progress = await handle.query(streamProgressQuery);
    }
    return progress;
  }

  test('a shard consumer that ends ZOMBIE (its lease taken) is started again and goes on consuming', async () => {
    // Prepare
    const streamName = await createStream(context.kinesis, 1, 'restart-zombie');
    const shardId = await firstShardId(context.kinesis, streamName);
    const applicationName = uniqueName('app');
    const taskQueue = uniqueName('tq');
    const { factory, recording } = recordingProcessor();
    const worker = await testWorker(context, { processors: { recorder: factory }, taskQueue });
    await putRecords(context.kinesis, streamName, [{ partitionKey: 'k', data: 'before' }]);

    const outcome = await worker.runUntil(
      (async () => {
        await startStreamConsumer(context.client, {
          applicationName,
          streamName,
          processor: 'recorder',
          taskQueue,
          shardSyncIntervalMs: 500,
          shardOptions: { initialPosition: 'TRIM_HORIZON', idleTimeBetweenReadsMs: 100 },
        });
        await recording.until((r) => r.records.some((record) => record.text === 'before'), 20_000);

        // Act: another owner takes the lease; the next checkpoint of the consumer fails and it ends as a ZOMBIE.
        const table = new CheckpointTable({ dynamoDb: context.dynamoDb, tableName: applicationName });
        await table.claim({ shardId, owner: 'intruder' });
        await putRecords(context.kinesis, streamName, [{ partitionKey: 'k', data: 'during' }]);
        await recording.until((r) => r.shutdowns.some((s) => s.reason === 'ZOMBIE'), 20_000);
        await putRecords(context.kinesis, streamName, [{ partitionKey: 'k', data: 'after' }]);

        const delivered = await recording
          .until((r) => r.records.some((record) => record.text === 'after'), 20_000)
          .then(
            () => true,
            () => false,
          );
        const progress = await streamProgressWhen(applicationName, streamName, (p) =>
          p.shards.some((s) => s.state === 'RUNNING' && (s.restarts ?? 0) >= 1),
        );
        await stopStreamConsumer(context.client, { applicationName, streamName, wait: true });
        return { delivered, progress };
      })(),
    );

    // Assess
    const shard = outcome.progress.shards.find((s) => s.shardId === shardId);
    console.log(
      `after the ZOMBIE: 'after' delivered ${outcome.delivered}; stream progress of the shard ${JSON.stringify(shard)}`,
    );
    assert.equal(outcome.delivered, true, 'the record put after the ZOMBIE end was delivered (the shard restarted)');
    assert.equal(shard?.state, 'RUNNING');
    assert.ok((shard?.restarts ?? 0) >= 1, 'the restart is counted');
    assert.match(shard?.lastEnd ?? '', /ZOMBIE/, 'the reason of the restart is shown');
  });

  test('a shard consumer that FAILED is started again (with backoff) and consumes the shard', async () => {
    // Prepare: initialize fails on its first call; with maximumAttempts 1 the shard consumer fails.
    const streamName = await createStream(context.kinesis, 1, 'restart-failed');
    const shardId = await firstShardId(context.kinesis, streamName);
    const applicationName = uniqueName('app');
    const taskQueue = uniqueName('tq');
    const { factory: recorder, recording } = recordingProcessor();
    let initializeCalls = 0;
    const factory: RecordProcessorFactory = async (ref) => {
      const processor = await recorder(ref);
      return {
        ...processor,
        processRecords: processor.processRecords.bind(processor),
        shutdown: processor.shutdown?.bind(processor),
        initialize(input) {
          initializeCalls++;
          if (initializeCalls === 1) throw new Error('initialize fails the first time');
          return processor.initialize?.(input);
        },
      };
    };
    const worker = await testWorker(context, { processors: { flaky: factory }, taskQueue });
    await putRecords(context.kinesis, streamName, [{ partitionKey: 'k', data: 'one' }]);

    const outcome = await worker.runUntil(
      (async () => {
        await startStreamConsumer(context.client, {
          applicationName,
          streamName,
          processor: 'flaky',
          taskQueue,
          shardSyncIntervalMs: 500,
          shardOptions: {
            initialPosition: 'TRIM_HORIZON',
            idleTimeBetweenReadsMs: 100,
            processingRetry: { maximumAttempts: 1, initialIntervalMs: 100 },
          },
        });
        const delivered = await recording
          .until((r) => r.records.some((record) => record.text === 'one'), 20_000)
          .then(
            () => true,
            () => false,
          );
        const progress = await streamProgressWhen(applicationName, streamName, (p) =>
          p.shards.some((s) => s.state === 'RUNNING' && (s.restarts ?? 0) >= 1),
        );
        const runs: string[] = [];
        for await (const execution of context.client.workflow.list({
          query: `WorkflowId = "${shardConsumerWorkflowId(applicationName, streamName, shardId)}"`,
        })) {
          runs.push(execution.status.name);
        }
        await stopStreamConsumer(context.client, { applicationName, streamName, wait: true });
        return { delivered, progress, runs };
      })(),
    );

    // Assess
    const shard = outcome.progress.shards.find((s) => s.shardId === shardId);
    console.log(
      `after the failure: delivered ${outcome.delivered}, initialize calls ${initializeCalls}, runs ${outcome.runs.join(',')}; ` +
        `stream progress of the shard ${JSON.stringify(shard)}`,
    );
    assert.equal(outcome.delivered, true, 'the shard was consumed after its consumer failed');
    assert.equal(shard?.state, 'RUNNING');
    assert.ok((shard?.restarts ?? 0) >= 1, 'the restart is counted');
    assert.match(shard?.lastEnd ?? '', /FAILED.*initialize fails the first time/, 'the failure is shown');
    assert.ok(outcome.runs.includes('FAILED'), `the first consumer failed: ${outcome.runs.join(',')}`);
  });

  test('after a continue-as-new, a shard consumer terminated by hand is found by the audit and started again', async () => {
    // Prepare: a stream consumer whose runs are short (continue-as-new every ~100 events).
    const streamName = await createStream(context.kinesis, 1, 'restart-audit');
    const shardId = await firstShardId(context.kinesis, streamName);
    const applicationName = uniqueName('app');
    const taskQueue = uniqueName('tq');
    const { factory, recording } = recordingProcessor();
    const worker = await testWorker(context, { processors: { recorder: factory }, taskQueue });
    const shardWorkflowId = shardConsumerWorkflowId(applicationName, streamName, shardId);

    const outcome = await worker.runUntil(
      (async () => {
        const handle = await context.client.workflow.start(streamConsumerWorkflow, {
          taskQueue,
          workflowId: streamConsumerWorkflowId(applicationName, streamName),
          args: [
            {
              applicationName,
              streamName,
              processor: 'recorder',
              shardSyncIntervalMs: 100,
              shardAuditIntervalMs: 500,
              maxHistoryEventsPerRun: 100,
              shardOptions: { initialPosition: 'TRIM_HORIZON', idleTimeBetweenReadsMs: 100 },
            },
          ],
        });
        // Act: once the consumer started by the first run is running and the stream consumer has moved on to a later
        // run (which does not watch that child), terminate the shard consumer by hand.
        const later = await streamProgressWhen(applicationName, streamName, (p) => p.run >= 2 && p.shards.length === 1);
        await context.client.workflow.getHandle(shardWorkflowId).terminate('terminated by hand in a test');
        await putRecords(context.kinesis, streamName, [{ partitionKey: 'k', data: 'after' }]);
        const delivered = await recording
          .until((r) => r.records.some((record) => record.text === 'after'), 20_000)
          .then(
            () => true,
            () => false,
          );
        const progress = await streamProgressWhen(applicationName, streamName, (p) =>
          p.shards.some((s) => s.state === 'RUNNING' && (s.restarts ?? 0) >= 1),
        );
        await handle.signal(stopSignal);
        const result = await handle.result();
        return { run: later.run, delivered, progress, result };
      })(),
    );

    // Assess
    const shard = outcome.progress.shards.find((s) => s.shardId === shardId);
    console.log(
      `terminated in run ${outcome.run}: 'after' delivered ${outcome.delivered}; shard ${JSON.stringify(shard)}; ` +
        `result ${JSON.stringify(outcome.result)}`,
    );
    assert.equal(outcome.delivered, true, 'the shard was consumed again after its consumer was terminated');
    assert.equal(shard?.state, 'RUNNING');
    assert.match(shard?.lastEnd ?? '', /TERMINATED/);
    assert.equal(outcome.result.restarts, 1);
    assert.deepEqual(outcome.result.ended, { REQUESTED: 1 });
  });
});

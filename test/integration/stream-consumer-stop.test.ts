/**
 * Stopping a stream consumer when a stop signal to a shard consumer fails: only "that workflow is not running" means the
 * shard consumer is gone. Any other failure (here the server's per-execution signal limit, on a dev server of its own
 * started with `history.maximumSignalsPerExecution=1`) is retried, and the stop completes only once the shard consumer
 * has really ended.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { createAwsClients } from '../../src/aws/clients';
import { shardConsumerWorkflowId, streamConsumerWorkflowId } from '../../src/ids';
import { retrySignal } from '../../src/workflows/shard-consumer';
import { stopSignal, streamConsumerWorkflow, streamProgressQuery } from '../../src/workflows/stream-consumer';
import {
  createStream,
  firstShardId,
  type KclTestContext,
  progressWhen,
  recordingProcessor,
  testWorker,
} from '../helpers/kcl';
import { testStack, uniqueName } from '../helpers/stack';
import { createLocalEnv } from '../helpers/temporal-servers';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('stream consumer stop when a stop signal fails', () => {
  let env: TestWorkflowEnvironment;
  let context: KclTestContext;

  before(async () => {
    env = await createLocalEnv(['--dynamic-config-value', 'history.maximumSignalsPerExecution=1']);
    const stack = await testStack();
    const { kinesis, dynamoDb } = createAwsClients(stack.aws);
    context = {
      stack: { ...stack, temporalAddress: env.address, namespace: env.namespace ?? 'default' },
      kinesis,
      dynamoDb,
      client: env.client,
      nativeConnection: env.nativeConnection,
      async close() {
        kinesis.destroy();
        dynamoDb.destroy();
      },
    };
  });
  after(async () => {
    await context?.close();
    await env?.teardown();
  });

  test('a stop signal refused by the signal limit is retried: the shard is not taken for CLOSED', async () => {
    // Prepare
    const streamName = await createStream(context.kinesis, 1, 'stop-retry');
    const shardId = await firstShardId(context.kinesis, streamName);
    const applicationName = uniqueName('app');
    const taskQueue = uniqueName('tq');
    const { factory } = recordingProcessor();
    const worker = await testWorker(context, { processors: { recorder: factory }, taskQueue });
    const streamHandle = context.client.workflow.getHandle<typeof streamConsumerWorkflow>(
      streamConsumerWorkflowId(applicationName, streamName),
    );
    const shardHandle = context.client.workflow.getHandle(
      shardConsumerWorkflowId(applicationName, streamName, shardId),
    );

    const outcome = await worker.runUntil(
      (async () => {
        await context.client.workflow.start(streamConsumerWorkflow, {
          taskQueue,
          workflowId: streamHandle.workflowId,
          args: [
            {
              applicationName,
              streamName,
              processor: 'recorder',
              shardSyncIntervalMs: 500,
              // No continue-as-new of the shard consumer during the test: it would reset its signal count.
              shardOptions: { initialPosition: 'TRIM_HORIZON', idleTimeBetweenReadsMs: 200, maxBatchesPerRun: 100_000 },
            },
          ],
        });
        for (let i = 0; i < 100; i++) {
          if (
            await shardHandle.describe().then(
              () => true,
              () => false,
            )
          )
            break;
          await sleep(100);
        }
        const started = await progressWhen(shardHandle, (p) => p.state === 'PROCESSING', 20_000);
        assert.equal(started.state, 'PROCESSING');
        // Act: the shard consumer takes its one signal (a harmless retry), so the stop signal will be refused.
        await shardHandle.signal(retrySignal);
        await streamHandle.signal(stopSignal);
        await sleep(5_000);
        const streamAfterStop = (await streamHandle.describe()).status.name;
        const shardAfterStop = (await shardHandle.describe()).status.name;
        const progress = streamAfterStop === 'RUNNING' ? await streamHandle.query(streamProgressQuery) : undefined;
        // Once the shard consumer really ends, the stop completes.
        await shardHandle.terminate('ended by the test');
        const deadline = Date.now() + 20_000;
        let streamAtEnd = streamAfterStop;
        while (streamAtEnd === 'RUNNING' && Date.now() < deadline) {
          await sleep(200);
          streamAtEnd = (await streamHandle.describe()).status.name;
        }
        const result = streamAtEnd === 'COMPLETED' ? await streamHandle.result() : undefined;
        return { streamAfterStop, shardAfterStop, progress, streamAtEnd, result };
      })(),
    );

    // Assess
    console.log(
      `5 s after the stop: stream consumer ${outcome.streamAfterStop}, shard consumer ${outcome.shardAfterStop}; ` +
        `progress ${JSON.stringify(outcome.progress?.shards)}; at the end: ${outcome.streamAtEnd} ${JSON.stringify(outcome.result)}`,
    );
    assert.equal(outcome.shardAfterStop, 'RUNNING', 'the refused stop signal did not reach the shard consumer');
    assert.equal(
      outcome.streamAfterStop,
      'RUNNING',
      'the stream consumer must not complete while its shard consumer still runs',
    );
    assert.equal(outcome.progress?.state, 'STOPPING');
    assert.equal(outcome.progress?.shards[0]?.state, 'RUNNING');
    assert.equal(outcome.streamAtEnd, 'COMPLETED', 'the stop completed once the shard consumer had ended');
    assert.deepEqual(outcome.result?.ended, { TERMINATED: 1 });
  });
});

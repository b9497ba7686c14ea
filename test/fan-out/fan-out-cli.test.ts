/**
 * Enhanced fan-out through the CLI, as users run it: `temporal-kcl start --retrieval fan-out --consumer-name NAME`
 * registers that consumer, `status` names it, `stop --deregister` removes it; wrong combinations are refused with the
 * option to change. Kinesis is the stack's fan-out front (kinesis-local cannot serve SubscribeToShard to the SDK).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DescribeStreamConsumerCommand, DescribeStreamSummaryCommand } from '@aws-sdk/client-kinesis';
import type { statusJson } from '../../src/cli/status-view';
import { cliEnvironment, killAllCliProcesses, runCli } from '../helpers/cli';
import { createStream, kclTestContextForSuite, putRecords, recordingProcessor, testWorker } from '../helpers/kcl';
import { uniqueName } from '../helpers/stack';

type StatusJson = ReturnType<typeof statusJson>;

describe('temporal-kcl start --retrieval fan-out', () => {
  const context = kclTestContextForSuite({ beforeClose: killAllCliProcesses });

  test('--consumer-name is registered and shown by status; stop --deregister removes it; records arrive once, in order', async () => {
    const { kinesis } = context;
    const fanOutEndpoint = context.stack.kinesisFanOutEndpoint;
    assert.ok(fanOutEndpoint, 'the stack runs kinesis-local with its fan-out front');
    const stack = { ...context.stack, aws: { ...context.stack.aws, kinesisEndpoint: fanOutEndpoint } };
    const streamName = await createStream(kinesis, 1, 'cli-fan-out');
    const streamArn = (await kinesis.send(new DescribeStreamSummaryCommand({ StreamName: streamName })))
      .StreamDescriptionSummary?.StreamARN;
    const applicationName = uniqueName('cli-fan-out-app');
    const consumerName = uniqueName('efo');
    const taskQueue = uniqueName('cli-tq');
    const env = cliEnvironment(stack, { TEMPORAL_KCL_TASK_QUEUE: taskQueue });
    const { factory, recording } = recordingProcessor();
    const worker = await testWorker(context, { processors: { default: factory }, taskQueue, aws: stack.aws });
    const consumer = ['--app', applicationName, '--stream', streamName];

    await worker.runUntil(
      (async () => {
        const start = await runCli(
          [
            'start',
            ...consumer,
            '--initial-position',
            'TRIM_HORIZON',
            '--retrieval',
            'fan-out',
            '--consumer-name',
            consumerName,
          ],
          env,
        );
        assert.equal(start.code, 0, start.stderr);
        const texts = Array.from({ length: 30 }, (_, i) => `record-${i}`);
        await putRecords(
          kinesis,
          streamName,
          texts.map((data) => ({ partitionKey: 'one-key', data })),
        );
        await recording.until((r) => r.records.length >= texts.length, 60_000);
        assert.deepEqual(
          recording.records.map((r) => r.text),
          texts,
        );

        const described = await kinesis.send(
          new DescribeStreamConsumerCommand({ StreamARN: streamArn, ConsumerName: consumerName }),
        );
        assert.equal(described.ConsumerDescription?.ConsumerStatus, 'ACTIVE');
        const status = await runCli(['status', ...consumer, '--json'], env);
        assert.equal(status.code, 0, status.stderr);
        const parsed = JSON.parse(status.stdout) as StatusJson;
        assert.deepEqual(parsed.retrieval, {
          type: 'fan-out',
          consumerName,
          consumerArn: described.ConsumerDescription?.ConsumerARN,
        });
        const table = await runCli(['status', ...consumer], env);
        assert.match(table.stdout, new RegExp(`enhanced fan-out through consumer ${consumerName}`));

        const stop = await runCli(['stop', ...consumer, '--deregister'], env);
        assert.equal(stop.code, 0, stop.stderr);
        assert.match(stop.stdout, /deregistered the enhanced fan-out consumer arn:aws:kinesis:/);
        await assert.rejects(
          kinesis.send(new DescribeStreamConsumerCommand({ StreamARN: streamArn, ConsumerName: consumerName })),
          { name: 'ResourceNotFoundException' },
        );
      })(),
    );
    assert.deepEqual(
      recording.shutdowns.map((shutdown) => shutdown.reason),
      ['REQUESTED'],
    );
  });

  test('refused with the option to change: fan-out with --execution per-batch, a bad --consumer-name, --consumer-name without fan-out', async () => {
    const env = cliEnvironment(context.stack);
    const consumer = [
      '--app',
      uniqueName('cli-app'),
      '--stream',
      await createStream(context.kinesis, 1, 'cli-refused'),
    ];
    const cases: [string[], RegExp][] = [
      [['--retrieval', 'fan-out', '--execution', 'per-batch'], /retrieval 'fan-out' runs in the windowed execution/],
      [['--retrieval', 'fan-out', '--consumer-name', 'has spaces'], /consumerName must be 1-128 letters/],
      [['--consumer-name', 'efo', '--retrieval', 'polling'], /consumerName names the enhanced fan-out consumer/],
      [['--retrieval', 'push'], /--retrieval.*polling, fan-out/],
    ];
    for (const [flags, message] of cases) {
      const run = await runCli(['start', ...consumer, ...flags], env);
      assert.equal(run.code, 1, `${flags.join(' ')}: ${run.stdout}`);
      assert.match(run.stderr, message, flags.join(' '));
    }
  });
});

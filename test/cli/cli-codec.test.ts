/**
 * The payload codec through the CLI: with TEMPORAL_KCL_CODEC_KEY set, `start` writes the stream consumer's input to
 * history encrypted (read back from the raw history), `status` decodes what the encrypting workers answer, and `stop`
 * decodes the result.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { CODEC_ENCODING, KclPayloadCodec } from '../../src/codec/payload-codec';
import type { statusJson } from '../../src/cli/status-view';
import { streamConsumerWorkflowId } from '../../src/ids';
import { cliEnvironment, killAllCliProcesses, runCli } from '../helpers/cli';
import { createStream, kclTestContextForSuite, putRecords, recordingProcessor, testWorker } from '../helpers/kcl';
import { uniqueName } from '../helpers/stack';

type StatusJson = ReturnType<typeof statusJson>;

describe('temporal-kcl CLI with the payload codec', () => {
  const context = kclTestContextForSuite({ beforeClose: killAllCliProcesses });

  test('start writes its input encrypted; status and stop decode what encrypting workers return', async () => {
    // Prepare: workers that encrypt with the key the CLI gets through TEMPORAL_KCL_CODEC_KEY.
    const key = randomBytes(32);
    const streamName = await createStream(context.kinesis, 1, 'cli-codec');
    const applicationName = uniqueName('cli-codec-app');
    const taskQueue = uniqueName('cli-codec-tq');
    const env = cliEnvironment(context.stack, {
      TEMPORAL_KCL_TASK_QUEUE: taskQueue,
      TEMPORAL_KCL_CODEC_KEY: key.toString('base64'),
    });
    const { factory, recording } = recordingProcessor();
    const worker = await testWorker(context, {
      processors: { default: factory },
      taskQueue,
      dataConverter: { payloadCodecs: [new KclPayloadCodec({ encryptionKey: key })] },
    });
    const consumer = ['--app', applicationName, '--stream', streamName];

    const outcome = await worker.runUntil(
      (async () => {
        // Act
        const start = await runCli(['start', ...consumer, '--initial-position', 'TRIM_HORIZON'], env);
        assert.equal(start.code, 0, start.stderr);
        await putRecords(context.kinesis, streamName, [{ partitionKey: 'k', data: 'secret-record' }]);
        await recording.until((r) => r.records.length >= 1, 30_000);

        // The input as the server stores it (this test's client has no codec: it sees the raw payloads).
        const history = await context.client.workflow
          .getHandle(streamConsumerWorkflowId(applicationName, streamName))
          .fetchHistory();
        const input = history.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
        const encoding = new TextDecoder().decode(input?.metadata?.encoding ?? new Uint8Array());
        const raw = Buffer.from(input?.data ?? new Uint8Array()).toString('latin1');

        let status: StatusJson | undefined;
        let statusRun = await runCli(['status', ...consumer, '--json'], env);
        for (let i = 0; i < 30 && statusRun.code === 0; i++) {
          status = JSON.parse(statusRun.stdout) as StatusJson;
          if (status.totals.records >= 1) break;
          await new Promise((resolve) => setTimeout(resolve, 300));
          statusRun = await runCli(['status', ...consumer, '--json'], env);
        }
        const stop = await runCli(['stop', ...consumer], env);
        return { encoding, raw, statusRun, status, stop };
      })(),
    );

    // Assess
    console.log(
      `input encoding in history: ${outcome.encoding}; stream name readable in it: ${outcome.raw.includes(streamName)}; ` +
        `status exit ${outcome.statusRun.code} ${outcome.statusRun.stderr.trim().slice(0, 200)}; stop exit ${outcome.stop.code}`,
    );
    assert.equal(outcome.encoding, CODEC_ENCODING.encrypted, 'start wrote its input encrypted');
    assert.equal(outcome.raw.includes(streamName), false, 'the stream name is not readable in history');
    assert.equal(outcome.statusRun.code, 0, outcome.statusRun.stderr);
    assert.equal(outcome.status?.streamName, streamName);
    assert.equal(outcome.status?.totals.records, 1);
    assert.equal(outcome.stop.code, 0, outcome.stop.stderr);
    assert.match(outcome.stop.stdout, /stopped .*1 shard consumers started in all \(REQUESTED: 1\)/);
  });
});

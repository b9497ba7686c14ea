/**
 * What must never leak: record data and partition keys into Temporal history, AWS secret keys into logs, and (with the
 * payload codec on) workflow inputs and results into history in the clear. Each check looks at the raw bytes: history
 * as the server stores it (every run of every consumer workflow), and everything a worker process prints.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client } from '@temporalio/client';
import type { Payload } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { resolveSettings } from '../../src/cli/settings';
import { CODEC_ENCODING } from '../../src/codec/payload-codec';
import { getStreamProgress, startStreamConsumer, stopStreamConsumer } from '../../src/client/consumers';
import { getFreePort } from '../../src/dev/net';
import { shardConsumerWorkflowId, streamConsumerWorkflowId } from '../../src/ids';
import { type CliWorker, startCli, startCliWorker } from '../helpers/cli-worker';
import { type FaultKind, startFaultProxy } from '../helpers/fault-proxy';
import { createStream, kclTestContext, type KclTestContext, recordingProcessor, testWorker } from '../helpers/kcl';
import { putMixedRecords } from '../helpers/mixed-records';
import { uniqueName } from '../helpers/stack';

/** Every id the workflow code passes to `patched()` (src/workflows). */
function workflowPatchIds(): string[] {
  const dir = join(__dirname, '..', '..', 'src', 'workflows');
  const ids = readdirSync(dir)
    .filter((file) => file.endsWith('.ts'))
    .flatMap((file) => [...readFileSync(join(dir, file), 'utf8').matchAll(/\bpatched\('([a-z0-9-]+)'\)/g)])
    .map((match) => match[1]!);
  assert.ok(ids.includes('placement'), `patch ids found in src/workflows: ${ids.join(', ')}`);
  return [...new Set(ids)].sort();
}

/** A marker no other test writes: letters and digits only, so it is valid in stream names and partition keys. */
function marker(label: string): string {
  return `${label}${randomBytes(12).toString('hex')}`;
}

/**
 * The forms a marker can take in bytes: itself, and its base64 at each of the three alignments inside a longer
 * encoding (the characters that depend on the marker's bytes alone), as a protobuf `bytes` field shows in JSON.
 */
function markerForms(text: string): { form: string; bytes: Buffer }[] {
  const forms = [{ form: 'raw', bytes: Buffer.from(text) }];
  for (let offset = 0; offset < 3; offset++) {
    const encoded = Buffer.concat([Buffer.alloc(offset, 0x20), Buffer.from(text)]).toString('base64');
    forms.push({ form: `base64@${offset}`, bytes: Buffer.from(encoded.slice(4, -4)) });
  }
  return forms;
}

/** Which forms of the marker occur in the bytes. */
function occurrences(haystack: Buffer | string, text: string): string[] {
  const bytes = typeof haystack === 'string' ? Buffer.from(haystack) : haystack;
  return markerForms(text)
    .filter(({ bytes: form }) => bytes.includes(form))
    .map(({ form }) => form);
}

interface RunHistory {
  workflowId: string;
  runId: string;
  history: temporal.api.history.v1.History;
  bytes: Buffer;
}

/** Every run of a workflow (following continue-as-new back to the first), newest first, as the server stores them. */
async function allRuns(client: Client, workflowId: string): Promise<RunHistory[]> {
  const runs: RunHistory[] = [];
  let runId: string | undefined = (await client.workflow.getHandle(workflowId).describe()).runId;
  while (runId) {
    const raw = await client.workflow.getHandle(workflowId, runId).fetchHistory();
    const bytes = Buffer.from(temporal.api.history.v1.History.encode(raw).finish());
    const history = temporal.api.history.v1.History.decode(bytes);
    runs.push({ workflowId, runId, history, bytes });
    runId = history.events[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId || undefined;
  }
  return runs;
}

/** Every run of a stream consumer and of each of its shard consumers. */
async function consumerHistories(
  client: Client,
  applicationName: string,
  streamName: string,
  shardIds: string[],
): Promise<RunHistory[]> {
  const ids = [
    streamConsumerWorkflowId(applicationName, streamName),
    ...shardIds.map((shardId) => shardConsumerWorkflowId(applicationName, streamName, shardId)),
  ];
  return (await Promise.all(ids.map((id) => allRuns(client, id)))).flat();
}

/** Every Payload in a decoded history event tree (protobufjs messages know their type), with the path to it. */
function payloadsIn(value: unknown, path: string[] = []): { path: string; payload: Payload }[] {
  if (!value || typeof value !== 'object' || value instanceof Uint8Array) return [];
  if ((value as { $type?: unknown }).$type === temporal.api.common.v1.Payload) {
    return [{ path: path.join('.'), payload: value }];
  }
  return Object.entries(value).flatMap(([key, child]) => payloadsIn(child, [...path, key]));
}

const encodingOf = (payload: Payload) =>
  payload.metadata?.encoding ? Buffer.from(payload.metadata.encoding).toString() : '(none)';

describe('security: what never leaks', () => {
  let context: KclTestContext;
  let directory: string;
  before(async () => {
    context = await kclTestContext();
    directory = mkdtempSync(join(tmpdir(), 'kcl-security-'));
  });
  after(async () => {
    await context.close();
    rmSync(directory, { recursive: true, force: true });
  });

  test('record data and partition keys never appear in the history of any run of any consumer workflow', async () => {
    // Prepare: plain records and KPL aggregates whose data and partition keys carry markers; runs of three batches.
    const dataMarker = marker('DATA');
    const keyMarker = marker('PKEY');
    const streamName = await createStream(context.kinesis, 2, 'secret-data');
    const applicationName = uniqueName('app-secret');
    const taskQueue = uniqueName('tq-secret');
    const expected = await putMixedRecords(context.kinesis, streamName, {
      puts: 30,
      dataPrefix: `${dataMarker}-`,
      partitionKeyPrefix: `${keyMarker}-`,
    });
    const { factory, recording } = recordingProcessor();
    const worker = await testWorker(context, { processors: { recorder: factory }, taskQueue });

    // Act
    const shardIds = await worker.runUntil(
      (async () => {
        await startStreamConsumer(context.client, {
          applicationName,
          streamName,
          taskQueue,
          processor: 'recorder',
          shardOptions: {
            initialPosition: 'TRIM_HORIZON',
            maxRecords: 4,
            maxBatchesPerRun: 3,
            // windowed: a window per batch, so its runs continue as new as often as per-batch's.
            windowMaxBatches: 1,
            idleTimeBetweenReadsMs: 200,
          },
        });
        await recording.until((r) => r.records.length >= expected.length, 90_000);
        const status = await getStreamProgress(context.client, { applicationName, streamName });
        await stopStreamConsumer(context.client, { applicationName, streamName, wait: true });
        return status.shards.map((shard) => shard.shardId);
      })(),
    );
    const runs = await consumerHistories(context.client, applicationName, streamName, shardIds);

    // Assess
    const leaks = runs.flatMap((run) =>
      [
        ...occurrences(run.bytes, dataMarker).map((form) => `data marker (${form})`),
        ...occurrences(run.bytes, keyMarker).map((form) => `partition-key marker (${form})`),
      ].map((what) => `${run.workflowId} run ${run.runId}: ${what}`),
    );
    const bytes = runs.reduce((n, run) => n + run.bytes.length, 0);
    const events = runs.reduce((n, run) => n + run.history.events.length, 0);
    console.log(
      `[security] history: ${runs.length} runs (${shardIds.length} shard consumers + the stream consumer, continue-as-new every 3 batches), ` +
        `${events} events, ${bytes} bytes scanned for 2 markers x ${markerForms(dataMarker).length} forms; ` +
        `${recording.records.length} records delivered; leaks: ${leaks.length}`,
    );
    assert.equal(recording.records.length, expected.length);
    assert.ok(
      recording.records.every((r) => r.text.startsWith(dataMarker) && r.partitionKey.startsWith(keyMarker)),
      'the processor saw the markers',
    );
    assert.ok(
      runs.every((run) => run.bytes.includes(streamName)),
      'the scanned bytes are the real histories (they name the stream)',
    );
    assert.ok(runs.length > shardIds.length + 1, 'the shard consumers continued as new: every run was scanned');
    assert.deepEqual(leaks, [], 'no record data or partition key in history');
  });

  test('the AWS secret key never appears in a DEBUG-level worker log, even while AWS calls fail', async () => {
    // Prepare: a CLI worker whose credentials are markers, behind proxies that fail 30% of AWS calls.
    const secretKey = marker('SECRET');
    const accessKeyId = marker('AKID');
    const streamName = await createStream(context.kinesis, 1, 'secret-logs');
    const applicationName = uniqueName('app-logs');
    const taskQueue = uniqueName('tq-logs');
    const expected = await putMixedRecords(context.kinesis, streamName, { puts: 20 });
    const kinds: FaultKind[] = ['throttle', 'limit', 'server-error', 'reset', 'slow'];
    const proxyOptions = { faultRate: 0.3, kinds, cycleKinds: true, slowMs: 500 };
    const kinesisProxy = await startFaultProxy({ ...proxyOptions, target: context.stack.aws.kinesisEndpoint, seed: 3 });
    const dynamoProxy = await startFaultProxy({ ...proxyOptions, target: context.stack.aws.dynamoDbEndpoint, seed: 5 });
    let worker: CliWorker | undefined;
    try {
      worker = await startCliWorker({
        recordsFile: join(directory, 'secret-logs.jsonl'),
        args: ['--log-level', 'DEBUG', '--task-queue', taskQueue],
        env: {
          TEMPORAL_ADDRESS: context.stack.temporalAddress,
          TEMPORAL_NAMESPACE: context.stack.namespace,
          AWS_REGION: context.stack.aws.region,
          AWS_ACCESS_KEY_ID: accessKeyId,
          AWS_SECRET_ACCESS_KEY: secretKey,
          KINESIS_ENDPOINT: kinesisProxy.endpoint,
          DYNAMODB_ENDPOINT: dynamoProxy.endpoint,
        },
      });

      // Act: consume everything, stop, and stop the worker (its shutdown logs too).
      await startStreamConsumer(context.client, {
        applicationName,
        streamName,
        taskQueue,
        shardOptions: { initialPosition: 'TRIM_HORIZON', maxRecords: 5, idleTimeBetweenReadsMs: 200 },
      });
      await worker.until((lines) => lines.filter((line) => line.kind === 'record').length >= expected.length);
      await stopStreamConsumer(context.client, { applicationName, streamName, wait: true });
      const exit = await worker.stop();
      const output = worker.output();
      const runs = await consumerHistories(context.client, applicationName, streamName, ['shardId-000000000000']);

      // Assess
      const failuresLogged = (output.match(/Activity failed/g) ?? []).length;
      const awsErrorsLogged = [
        'ProvisionedThroughputExceededException',
        'LimitExceededException',
        'InternalFailure',
        'socket hang up',
      ].filter((text) => output.includes(text));
      const secretInLogs = occurrences(output, secretKey);
      const secretInHistory = runs.flatMap((run) => occurrences(run.bytes, secretKey));
      const accessKeyLines = output.split('\n').filter((line) => line.includes(accessKeyId));
      const faults = (proxy: typeof kinesisProxy) => Object.values(proxy.faults).reduce((n, count) => n + count, 0);
      console.log(
        `[security] logs: worker exited ${String(exit)} after ${output.length} characters of DEBUG output; ` +
          `${faults(kinesisProxy)} Kinesis and ${faults(dynamoProxy)} DynamoDB faults injected; ${failuresLogged} "Activity failed" ` +
          `entries naming ${JSON.stringify(awsErrorsLogged)}; secret key in logs: ${secretInLogs.length}, in history: ` +
          `${secretInHistory.length}; access key id in ${accessKeyLines.length} log lines`,
      );
      for (const line of accessKeyLines.slice(0, 3))
        console.log(`[security] access key id seen in: ${line.slice(0, 300)}`);
      for (const line of output
        .split('\n')
        .filter((l) => occurrences(l, secretKey).length > 0)
        .slice(0, 3)) {
        console.log(`[security] SECRET LEAKED in: ${line.slice(0, 300)}`);
      }

      assert.ok(worker.records().length >= expected.length, 'the worker consumed the stream');
      assert.ok(
        failuresLogged > 0 && awsErrorsLogged.length > 0,
        'AWS errors were logged (the check has something to scan)',
      );
      assert.match(output, /DEBUG/, 'DEBUG logging was on');
      assert.deepEqual(secretInLogs, [], 'the secret access key never appears in the logs');
      assert.deepEqual(secretInHistory, [], 'the secret access key never appears in history');
    } finally {
      await worker?.stop();
      await kinesisProxy.close();
      await dynamoProxy.close();
    }
  });

  test('with TEMPORAL_KCL_CODEC_KEY, workflow payloads are encrypted in history and the codec server decodes them', async () => {
    // Prepare: the codec as the CLI builds it from TEMPORAL_KCL_CODEC_KEY, on the worker and the client; a stream whose
    // name carries a marker.
    const key = randomBytes(32).toString('base64');
    const streamMarker = marker('STREAM');
    const previous = process.env.TEMPORAL_KCL_CODEC_KEY;
    let dataConverter;
    try {
      process.env.TEMPORAL_KCL_CODEC_KEY = key;
      dataConverter = resolveSettings({}).dataConverter;
    } finally {
      if (previous === undefined) delete process.env.TEMPORAL_KCL_CODEC_KEY;
      else process.env.TEMPORAL_KCL_CODEC_KEY = previous;
    }
    assert.ok(dataConverter, 'TEMPORAL_KCL_CODEC_KEY turns the codec on');
    const client = new Client({
      connection: context.client.connection,
      namespace: context.stack.namespace,
      dataConverter,
    });
    const streamName = await createStream(context.kinesis, 1, `codec-${streamMarker}`);
    const applicationName = uniqueName('app-codec');
    const taskQueue = uniqueName('tq-codec');
    const expected = await putMixedRecords(context.kinesis, streamName, { puts: 12 });
    const { factory, recording } = recordingProcessor();
    const worker = await testWorker(context, { processors: { recorder: factory }, taskQueue, dataConverter });
    const codecPort = await getFreePort();
    const codecServer = startCli(['codec-server', '--port', String(codecPort)], { TEMPORAL_KCL_CODEC_KEY: key });

    try {
      // Act: consume, query progress through the codec, stop; fetch the raw histories; decode through the codec server.
      const progress = await worker.runUntil(
        (async () => {
          await startStreamConsumer(client, {
            applicationName,
            streamName,
            taskQueue,
            processor: 'recorder',
            shardOptions: { initialPosition: 'TRIM_HORIZON', maxRecords: 5, idleTimeBetweenReadsMs: 200 },
          });
          await recording.until((r) => r.records.length >= expected.length, 60_000);
          const status = await getStreamProgress(client, { applicationName, streamName });
          const result = await stopStreamConsumer(client, { applicationName, streamName, wait: true });
          return { status, result };
        })(),
      );
      const runs = await consumerHistories(context.client, applicationName, streamName, ['shardId-000000000000']);
      const found = runs.flatMap((run) => run.history.events.flatMap((event) => payloadsIn(event)));
      // Search attributes are indexed by the server, so they are plain by design (and name the stream): not codec payloads.
      const indexed = found.filter(({ path }) => path.includes('searchAttributes'));
      const payloads = found.filter(({ path }) => !path.includes('searchAttributes'));
      const byField = new Map<string, number>();
      for (const { path } of payloads) {
        const field = path.replace(/\.\d+/g, '').replace(/\.payloads$/, '');
        byField.set(field, (byField.get(field) ?? 0) + 1);
      }
      const nameInRawHistory = runs.filter((run) => run.bytes.includes(streamMarker)).length;
      const byEncoding = new Map<string, number>();
      for (const { payload } of payloads)
        byEncoding.set(encodingOf(payload), (byEncoding.get(encodingOf(payload)) ?? 0) + 1);
      // A local activity's marker carries the SDK's own bookkeeping (seq, attempt, activity type, times) as plain JSON in
      // `details.data`; its result is in `details.result`, encrypted like every other payload. A `patched()` marker
      // carries the patch id (a constant of the workflow code, e.g. "placement") and a deprecation flag in
      // `details.patch-data`, written by the SDK itself without the codec: only the ids src/workflows passes to `patched()`
      // count as bookkeeping.
      const PATCH_IDS = workflowPatchIds();
      const patchIdOf = (payload: temporal.api.common.v1.IPayload): string => {
        const data = JSON.parse(Buffer.from(payload.data ?? []).toString()) as Record<string, unknown>;
        const id = data.id ?? data.patchId ?? data.patch_id;
        return typeof id === 'string' ? id : '';
      };
      const bookkeeping = ({ path, payload }: { path: string; payload: temporal.api.common.v1.IPayload }) =>
        path.startsWith('markerRecordedEventAttributes.details.data.') ||
        (path.startsWith('markerRecordedEventAttributes.details.patch-data.') &&
          PATCH_IDS.includes(patchIdOf(payload)));
      const clear = payloads.filter(
        (found) => !bookkeeping(found) && encodingOf(found.payload) !== CODEC_ENCODING.encrypted,
      );
      const leaking = payloads.filter(
        ({ payload }) =>
          occurrences(Buffer.from(temporal.api.common.v1.Payload.encode(payload).finish()), streamMarker).length > 0,
      );

      await codecServer.waitForOutput(/codec server on http/, 30_000);
      const body = JSON.stringify(
        temporal.api.common.v1.Payloads.toObject(
          temporal.api.common.v1.Payloads.create({ payloads: payloads.map(({ payload }) => payload) }),
          { bytes: String },
        ),
      );
      const response = await fetch(`http://127.0.0.1:${codecPort}/decode`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body,
      });
      const decodedJson = (await response.json()) as Record<string, unknown>;
      const decoded = temporal.api.common.v1.Payloads.fromObject(decodedJson).payloads;
      const decodedEncodings = new Set(decoded.map((payload) => encodingOf(payload)));
      const naming = decoded.filter((payload) => Buffer.from(payload.data ?? []).includes(streamMarker)).length;
      const streamInput = decoded
        .filter((payload) => encodingOf(payload) === 'json/plain')
        .map((payload) => JSON.parse(Buffer.from(payload.data ?? []).toString()) as unknown)
        .find(
          (value): value is { streamName: string; applicationName: string } =>
            typeof value === 'object' && value !== null && 'streamName' in value && 'processor' in value,
        );

      console.log(
        `[security] codec: ${runs.length} runs, ${payloads.length} payloads in history by encoding ` +
          `${JSON.stringify(Object.fromEntries(byEncoding))}, of which ${payloads.filter(bookkeeping).length} local-activity ` +
          `marker bookkeeping (plain by the SDK; no names) (+${indexed.length} search attributes, plain by design); ` +
          `${leaking.length} payloads show the stream name (it stays visible outside payloads, by design: workflow ids, ` +
          `search attributes; in ${nameInRawHistory} of ${runs.length} raw histories); codec server decoded ${decoded.length} ` +
          `(${[...decodedEncodings].join(', ')}), ${naming} of them name the stream; ${recording.records.length} records delivered; ` +
          `${progress.status.shards.length} shard(s) queried through the codec`,
      );

      console.log(`[security] codec: payloads by field ${JSON.stringify(Object.fromEntries(byField))}`);
      assert.equal(recording.records.length, expected.length, 'consumption works with the codec');
      assert.deepEqual(recording.records.map((r) => r.text).sort(), expected.map((r) => r.data).sort());
      assert.equal(progress.status.shards[0]?.progress?.counters.recordsProcessed, expected.length);
      assert.deepEqual(progress.result?.ended, { REQUESTED: 1 });
      assert.ok(payloads.length > 10, `payloads found in history: ${payloads.length}`);
      assert.deepEqual(
        clear.map(({ path, payload }) => `${path}: ${encodingOf(payload)}`),
        [],
        'every workflow payload (inputs, results, signals, queries, failures) is encrypted',
      );
      assert.deepEqual(
        leaking.map(({ path }) => path),
        [],
        'no payload shows the stream name',
      );
      assert.equal(response.status, 200);
      assert.equal(decoded.length, payloads.length);
      assert.ok(!decodedEncodings.has(CODEC_ENCODING.encrypted) && !decodedEncodings.has(CODEC_ENCODING.gzip));
      assert.ok(naming > 0, 'decoded payloads name the stream');
      assert.equal(streamInput?.streamName, streamName, 'the stream consumer input decodes to what was started');
    } finally {
      await codecServer.stop();
    }
  });
});

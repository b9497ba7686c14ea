/**
 * Upgrades without breaking running consumers: consumer workflows run forever across continue-as-new, so a worker of a
 * new release replays the histories of consumers an older release started. Every history in test/histories/ (recorded
 * by `npm run record-histories`: per-batch and windowed shard consumers, a reshard with its stream consumer, HALT and
 * retry, dead-letter, stops) must replay against the workflow code of this checkout without a non-determinism error.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { Worker } from '@temporalio/worker';
import { workflowBundle } from '../helpers/bundle';
import { historyFromJson } from '../helpers/history-json';
import { HISTORIES_DIR, type ManifestEntry, RECORD_MARK, readManifest } from '../helpers/histories';
import { installQuietRuntime } from '../helpers/runtime';

/** The history JSON of a recorded file (the SDK's form: `{ events: [...] }` with string event ids). */
function historyOf(entry: ManifestEntry): { events: { eventType?: string }[] } {
  return JSON.parse(readFileSync(join(HISTORIES_DIR, entry.file), 'utf8')) as { events: { eventType?: string }[] };
}

/** Every string in a JSON value, and each one's base64 decoding (payload data is base64 in history JSON). */
function textsIn(value: unknown, out: string[] = []): string[] {
  if (typeof value === 'string') out.push(value, Buffer.from(value, 'base64').toString('latin1'));
  else if (Array.isArray(value)) for (const item of value) textsIn(item, out);
  else if (value && typeof value === 'object') for (const item of Object.values(value)) textsIn(item, out);
  return out;
}

describe('recorded workflow histories', () => {
  const manifest = readManifest();
  const kinds = (scenario: string) => manifest.histories.filter((entry) => entry.scenario === scenario);

  test('the manifest names every history file, and the recordings cover what upgrades must keep replaying', () => {
    const files = readdirSync(HISTORIES_DIR)
      .filter((file) => file.endsWith('.json') && file !== 'manifest.json')
      .sort();
    assert.deepEqual(files, manifest.histories.map((entry) => entry.file).sort());

    const closedBy = (scenario: string) => kinds(scenario).map((entry) => entry.closedBy);
    const eventTypes = (scenario: string) =>
      kinds(scenario).flatMap((entry) => historyOf(entry).events.map((event) => event.eventType));
    // Continue-as-new in both executions; each ends in a completed run (a stop).
    for (const scenario of ['shard-per-batch', 'shard-windowed']) {
      assert.ok(closedBy(scenario).includes('WORKFLOW_EXECUTION_CONTINUED_AS_NEW'), `${scenario} continues as new`);
      assert.equal(closedBy(scenario).at(-1), 'WORKFLOW_EXECUTION_COMPLETED', `${scenario} ends with a stop`);
    }
    // The reshard: the stream consumer and three shard consumers (the parent and its two children), all completed.
    assert.deepEqual(
      kinds('reshard')
        .map((entry) => entry.workflowType)
        .sort(),
      ['shardConsumerWorkflow', 'shardConsumerWorkflow', 'shardConsumerWorkflow', 'streamConsumerWorkflow'],
    );
    assert.ok(eventTypes('reshard').includes('EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED'));
    // HALT is left by the retry signal; every scenario with a poison record saw a failed activity attempt.
    for (const scenario of ['halt-per-batch', 'halt-windowed', 'dead-letter-per-batch', 'dead-letter-windowed']) {
      assert.ok(eventTypes(scenario).includes('EVENT_TYPE_ACTIVITY_TASK_FAILED'), `${scenario} has a failed attempt`);
    }
    for (const scenario of ['halt-per-batch', 'halt-windowed']) {
      const signals = kinds(scenario).flatMap((entry) =>
        historyOf(entry).events.flatMap((event) => {
          const attributes = (event as { workflowExecutionSignaledEventAttributes?: { signalName?: string } })
            .workflowExecutionSignaledEventAttributes;
          return attributes?.signalName ? [attributes.signalName] : [];
        }),
      );
      assert.deepEqual(signals, ['retry', 'stop'], `${scenario}: the retry signal, then the stop`);
    }
    // Small enough to read and to replay fast.
    for (const entry of manifest.histories) assert.ok(entry.events <= 600, `${entry.file}: ${entry.events} events`);
  });

  test('no recorded history holds record data or a partition key', () => {
    for (const entry of manifest.histories) {
      // The check reads payloads too: the consumer's input (base64 in the file) names its stream.
      const streamName = entry.workflowId.split('/')[2] ?? '';
      assert.ok(streamName.length > 0 && textsIn(historyOf(entry)).some((text) => text.includes(streamName)));
      const leaks = textsIn(historyOf(entry)).filter((text) => text.includes(RECORD_MARK));
      assert.deepEqual(leaks, [], entry.file);
    }
  });

  test('every history replays against the current workflow code without a non-determinism error', async () => {
    installQuietRuntime();
    // Decoded here (see test/helpers/history-json.ts for why not by the SDK).
    const histories = manifest.histories.map((entry) => ({
      workflowId: entry.workflowId,
      history: historyFromJson(historyOf(entry)),
    }));
    const results: { file: string; error?: string }[] = [];
    let i = 0;
    for await (const result of Worker.runReplayHistories({ workflowBundle: await workflowBundle() }, histories)) {
      const entry = manifest.histories[i++]!;
      assert.equal(result.workflowId, entry.workflowId);
      results.push({
        file: entry.file,
        ...(result.error ? { error: `${result.error.name}: ${result.error.message}` } : {}),
      });
    }

    assert.equal(results.length, manifest.histories.length, 'every history was replayed');
    assert.deepEqual(
      results.filter((result) => result.error !== undefined),
      [],
      'histories that no longer replay: patch the change, or plan Worker Versioning or a drain (README, "Upgrading")',
    );
  });
});

/**
 * `npm run record-histories`: records the workflow histories that test/unit/replay-histories.test.ts replays against
 * every later build of the workflow code. It starts a local stack of its own, runs each scenario of
 * scripts/history-scenarios.ts with the workflow code of this checkout, and writes every run of every workflow the
 * scenario names as the SDK's history JSON (what `temporal workflow show --output json` writes and
 * `Worker.runReplayHistories` reads) into test/histories/, with test/histories/manifest.json naming each file's workflow.
 *
 * Refresh the recordings only together with a plan for the running consumers whose histories no longer replay (see the
 * README's "Upgrading"): a replay failure means a deployed worker would fail those consumers' workflow tasks.
 *
 * Usage: tsx scripts/record-histories.ts [scenario name ...]   (default: every scenario; named ones replace their files)
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { startDevStack } from '../src/dev/dev-stack';
import {
  HISTORIES_DIR,
  type Manifest,
  MANIFEST_FILE,
  type ManifestEntry,
  RECORD_MARK,
  readManifest,
} from '../test/helpers/histories';
import { historyToJson } from '../test/helpers/history-json';
import { kclTestContext } from '../test/helpers/kcl';
import { SCENARIOS } from './history-scenarios';

/** Every run of a closed workflow, oldest first. */
async function runsOf(client: Client, workflowId: string): Promise<temporal.api.history.v1.History[]> {
  const runs: temporal.api.history.v1.History[] = [];
  let runId: string | undefined = (await client.workflow.getHandle(workflowId).describe()).runId;
  while (runId) {
    const raw = await client.workflow.getHandle(workflowId, runId).fetchHistory();
    const history = temporal.api.history.v1.History.decode(temporal.api.history.v1.History.encode(raw).finish());
    runs.unshift(history);
    runId = history.events[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId || undefined;
  }
  return runs;
}

const eventTypeName = (type: temporal.api.enums.v1.EventType | null | undefined) =>
  (temporal.api.enums.v1.EventType[type ?? 0] ?? String(type)).replace(/^EVENT_TYPE_/, '');

/** A file-name-safe label for a workflow id (`temporal-kcl/<app>/<stream>[/<shard>]`). */
function label(workflowId: string): string {
  const shard = /\/(shardId-\d+)$/.exec(workflowId)?.[1];
  return shard ?? 'stream';
}

async function main(): Promise<void> {
  const wanted = process.argv.slice(2);
  const unknown = wanted.filter((name) => !SCENARIOS.some((s) => s.name === name));
  if (unknown.length > 0) {
    throw new Error(`unknown scenario(s): ${unknown.join(', ')}; known: ${SCENARIOS.map((s) => s.name).join(', ')}`);
  }
  const scenarios = wanted.length > 0 ? SCENARIOS.filter((s) => wanted.includes(s.name)) : SCENARIOS;

  // Consumers run with exactly the options the scenarios give (no execution forced by a test run's environment).
  delete process.env.TEMPORAL_KCL_TEST_EXECUTION;
  const stack = await startDevStack({ log: (line) => console.log(`[stack] ${line}`) });
  process.env.TEMPORAL_KCL_TEST_TEMPORAL_ADDRESS = stack.temporal.address;
  process.env.TEMPORAL_KCL_TEST_TEMPORAL_NAMESPACE = stack.temporal.namespace;
  process.env.TEMPORAL_KCL_TEST_KINESIS_ENDPOINT = stack.kinesisEndpoint;
  process.env.TEMPORAL_KCL_TEST_DYNAMODB_ENDPOINT = stack.dynamoDbEndpoint;
  const context = await kclTestContext();
  try {
    mkdirSync(HISTORIES_DIR, { recursive: true });
    const previous = wanted.length > 0 ? readManifest() : undefined;
    const entries = (previous?.histories ?? []).filter((entry) => !wanted.includes(entry.scenario));
    const descriptions: Record<string, string> = { ...previous?.scenarios };
    for (const file of readdirSync(HISTORIES_DIR)) {
      const scenario = scenarios.find((s) => file.startsWith(`${s.name}.`));
      if (file.endsWith('.json') && file !== 'manifest.json' && (wanted.length === 0 || scenario)) {
        rmSync(join(HISTORIES_DIR, file));
      }
    }

    for (const scenario of scenarios) {
      const began = Date.now();
      const workflowIds = await scenario.run(context);
      descriptions[scenario.name] = scenario.description;
      for (const workflowId of workflowIds) {
        const runs = await runsOf(context.client, workflowId);
        for (const [i, history] of runs.entries()) {
          const bytes = Buffer.from(temporal.api.history.v1.History.encode(history).finish());
          if (bytes.includes(Buffer.from(RECORD_MARK))) {
            throw new Error(`${workflowId} run ${i + 1}: record data or a partition key is in its history`);
          }
          const started = history.events[0]?.workflowExecutionStartedEventAttributes;
          const entry: ManifestEntry = {
            file: `${scenario.name}.${label(workflowId)}.run${i + 1}.json`,
            scenario: scenario.name,
            workflowId,
            workflowType: started?.workflowType?.name ?? '',
            run: i + 1,
            events: history.events.length,
            closedBy: eventTypeName(history.events.at(-1)?.eventType),
          };
          writeFileSync(join(HISTORIES_DIR, entry.file), `${JSON.stringify(historyToJson(history), null, 1)}\n`);
          entries.push(entry);
          console.log(`[record] ${entry.file}: ${entry.events} events, ${entry.closedBy}`);
        }
      }
      console.log(`[record] ${scenario.name} recorded in ${((Date.now() - began) / 1000).toFixed(1)} s`);
    }

    const order = (entry: ManifestEntry) => SCENARIOS.findIndex((s) => s.name === entry.scenario);
    entries.sort((a, b) => order(a) - order(b) || a.file.localeCompare(b.file, 'en', { numeric: true }));
    const manifest: Manifest = {
      recordedAt: new Date().toISOString(),
      recordedFrom: execFileSync('git', ['rev-parse', 'HEAD'], { encoding: 'utf8' }).trim(),
      scenarios: descriptions,
      histories: entries,
    };
    writeFileSync(MANIFEST_FILE, `${JSON.stringify(manifest, null, 2)}\n`);
  } finally {
    await context.close();
    await stack.stop();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);

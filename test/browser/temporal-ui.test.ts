/**
 * The demo as a user sees it in the Temporal Web UI: headless Chromium (Debian's, driven by playwright-core) opens the
 * dev stack's UI while the demo's consumers are still up, finds every shard consumer of the demo stream in the workflow
 * list filtered by the KclStream search attribute, and opens one shard consumer to read its summary and details.
 * Screenshots go to test-artifacts/ for a human to look at.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { ListShardsCommand } from '@aws-sdk/client-kinesis';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { createAwsClients } from '../../src/aws/clients';
import { type DemoContext, runDemo } from '../../src/demo/run-demo';
import { shardConsumerWorkflowId, streamConsumerWorkflowId } from '../../src/ids';
import { workflowBundle } from '../helpers/bundle';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];
const ARTIFACTS = resolve(__dirname, '..', '..', 'test-artifacts');
const LIST_SCREENSHOT = join(ARTIFACTS, 'temporal-ui-workflows.png');
const SHARD_SCREENSHOT = join(ARTIFACTS, 'temporal-ui-shard.png');
/** The UI is a single-page app on a 2-core machine next to a busy demo: be patient. */
const UI_TIMEOUT_MS = 60_000;

interface UiObservations {
  /** Every shard of the stream, as Kinesis lists it, with its parent (children of the split have one). */
  shards: { shardId: string; parentShardId: string | undefined }[];
  /** Workflow ids the list filtered by KclStream showed, of those looked for. */
  listed: string[];
  /** The shard consumer opened from the list, and the rendered summary and details its page showed. */
  opened: { workflowId: string; summary: string; details: string };
}

/** Asserts a file is a PNG of some substance: the signature, and more than a blank page's bytes. */
function assertPng(path: string): void {
  const bytes = readFileSync(path);
  assert.deepEqual([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], `${path} is a PNG`);
  assert.ok(bytes.length > 20_000, `${path} has ${bytes.length} bytes: more than an empty page`);
}

async function listShards(context: DemoContext): Promise<UiObservations['shards']> {
  const { kinesis } = createAwsClients(context.stack.aws);
  try {
    const { Shards = [] } = await kinesis.send(new ListShardsCommand({ StreamName: context.streamName }));
    return Shards.map((shard) => ({ shardId: shard.ShardId ?? '', parentShardId: shard.ParentShardId }));
  } finally {
    kinesis.destroy();
  }
}

/** Polls `probe` until it returns a value or `timeoutMs` passes (then the last value, undefined). */
async function poll<T>(page: Page, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined || Date.now() >= deadline) return value;
    await page.waitForTimeout(500);
  }
}

/**
 * Loads the workflow list until every id in `workflowIds` is on it (visibility may lag the workflows' start, and the
 * list does not refresh itself); returns the ids shown.
 */
async function openListUntilShown(page: Page, url: string, workflowIds: string[]): Promise<string[]> {
  const deadline = Date.now() + UI_TIMEOUT_MS;
  const shown = async () => {
    const body = await page.locator('body').innerText();
    return workflowIds.filter((id) => body.includes(id));
  };
  for (;;) {
    await page.goto(url, { waitUntil: 'load', timeout: UI_TIMEOUT_MS });
    // Give this load a few seconds to render the list before loading it again.
    const all = await poll(
      page,
      async () => ((await shown()).length === workflowIds.length ? true : undefined),
      Math.min(10_000, deadline - Date.now()),
    );
    if (all || Date.now() >= deadline) return shown();
  }
}

/**
 * The User Metadata tab renders the summary and the details as markdown, each in an iframe of its own: the text of
 * every such frame.
 */
async function renderedMarkdown(page: Page): Promise<string[]> {
  const frames = page.frames().filter((frame) => frame !== page.mainFrame() && frame.url().includes('/render'));
  return Promise.all(
    frames.map((frame) =>
      frame
        .locator('body')
        .innerText({ timeout: 5_000 })
        .catch(() => ''),
    ),
  );
}

async function inspectTemporalUi(context: DemoContext): Promise<UiObservations> {
  assert.ok(context.uiLink, 'the demo stack runs the Temporal Web UI');
  const shards = await listShards(context);
  const workflowIds = [
    streamConsumerWorkflowId(context.applicationName, context.streamName),
    ...shards.map((shard) => shardConsumerWorkflowId(context.applicationName, context.streamName, shard.shardId)),
  ];
  mkdirSync(ARTIFACTS, { recursive: true });
  const userDataDir = mkdtempSync(join(tmpdir(), 'temporal-kcl-chromium-'));
  let browser: BrowserContext | undefined;
  try {
    // playwright-core refuses --user-data-dir in args ("pass userDataDir to launchPersistentContext instead").
    browser = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      args: CHROMIUM_ARGS,
      viewport: { width: 1920, height: 1080 },
      timeout: UI_TIMEOUT_MS,
    });
    const page = browser.pages()[0] ?? (await browser.newPage());
    page.setDefaultTimeout(UI_TIMEOUT_MS);

    const listed = await openListUntilShown(page, context.uiLink, workflowIds);
    await page.screenshot({ path: LIST_SCREENSHOT, fullPage: true });

    // Open the first shard's consumer the way a user would: its link in the list, then the User Metadata tab. The
    // static summary and details are the run's the stream consumer started: a run continued as new has none (Temporal
    // does not carry them over; the current details, on every run, show the position). The list shows the newest run
    // first, so the oldest row is that run.
    const workflowId = shardConsumerWorkflowId(context.applicationName, context.streamName, 'shardId-000000000000');
    await page.getByRole('link', { name: workflowId, exact: true }).last().click();
    await page.waitForURL((url) => url.pathname.includes(encodeURIComponent(workflowId)));
    await page
      .getByRole('tab', { name: 'User Metadata' })
      .or(page.getByRole('link', { name: 'User Metadata' }))
      .first()
      .click();
    await page.waitForURL((url) => url.pathname.endsWith('/user-metadata'));
    const rendered = await poll(
      page,
      async () => {
        const texts = await renderedMarkdown(page);
        const summary = texts.find((text) => text.includes('Kinesis shard'));
        const details = texts.find((text) => text.includes('Shard consumer'));
        return summary && details ? { summary, details } : undefined;
      },
      UI_TIMEOUT_MS,
    );
    await page.screenshot({ path: SHARD_SCREENSHOT, fullPage: true });
    return {
      shards,
      listed,
      opened: { workflowId, summary: rendered?.summary ?? '', details: rendered?.details ?? '' },
    };
  } finally {
    await browser?.close();
    rmSync(userDataDir, { recursive: true, force: true });
  }
}

describe('the demo in the Temporal Web UI', () => {
  test(
    'the UI lists every shard consumer of the demo stream and shows what a shard consumer is',
    { timeout: 300_000 },
    async () => {
      // Prepare
      assert.ok(
        existsSync(CHROMIUM),
        `no Chromium at ${CHROMIUM}: install Debian's chromium (.ci/run does) or set CHROMIUM_PATH`,
      );
      rmSync(LIST_SCREENSHOT, { force: true });
      rmSync(SHARD_SCREENSHOT, { force: true });
      const lines: string[] = [];
      let ui: UiObservations | undefined;

      // Act
      const summary = await runDemo({
        shards: 4,
        rate: 50,
        durationMs: 22_000,
        splitAfterMs: 8_000,
        workflowBundle: await workflowBundle(),
        log: (line) => lines.push(line),
        live: () => undefined,
        beforeStop: async (context) => {
          ui = await inspectTemporalUi(context);
        },
      });

      // Assess: the demo itself
      const demoLog = `demo log:\n${lines.join('\n')}`;
      assert.ok(summary.produced > 0, demoLog);
      assert.equal(summary.delivered, summary.produced, demoLog);
      assert.equal(summary.outOfOrder, 0, demoLog);
      assert.equal(summary.split, true, demoLog);
      assert.ok(summary.shardConsumers >= 6, `${summary.shardConsumers} shard consumers; ${demoLog}`);

      // Assess: the list, filtered by KclStream, shows the stream consumer and a consumer per shard, children included
      assert.ok(ui, 'beforeStop ran');
      const originals = ui.shards.filter((shard) => shard.parentShardId === undefined);
      const children = ui.shards.filter((shard) => shard.parentShardId !== undefined);
      assert.equal(originals.length, 4, 'the stream was created with 4 shards');
      assert.equal(children.length, 2, 'the split made two children');
      const expected = [
        streamConsumerWorkflowId(summary.applicationName, summary.streamName),
        ...[...originals, ...children].map((shard) =>
          shardConsumerWorkflowId(summary.applicationName, summary.streamName, shard.shardId),
        ),
      ];
      assert.deepEqual(ui.listed, expected, 'the filtered list shows every consumer of the stream');

      // Assess: the shard consumer's page names its stream and shard, and its details render as a list
      assert.equal(ui.opened.workflowId, `temporal-kcl/demo/${summary.streamName}/shardId-000000000000`);
      assert.equal(
        ui.opened.summary.trim(),
        `Kinesis shard shardId-000000000000 of stream ${summary.streamName} (application demo)`,
      );
      assert.match(ui.opened.details, /^stream: demo-\d+$/m, `details: ${ui.opened.details}`);
      assert.match(ui.opened.details, /^shard: shardId-000000000000$/m, `details: ${ui.opened.details}`);
      assertPng(LIST_SCREENSHOT);
      assertPng(SHARD_SCREENSHOT);
    },
  );
});

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { Worker } from '@temporalio/worker';
import { greetingWorkflow, hourlyTimersWorkflow } from '../fixtures/smoke-workflows';
import { workflowBundle } from '../helpers/bundle';
import { uniqueName } from '../helpers/stack';
import { createLocalEnv, createTimeSkippingEnv } from '../helpers/temporal-servers';

const fixtures = join(__dirname, '..', 'fixtures', 'smoke-workflows.ts');

describe('real Temporal servers', () => {
  test('a workflow with one activity runs on the Temporal CLI dev server (createLocal)', async () => {
    const env = await createLocalEnv();
    try {
      const taskQueue = uniqueName('smoke');
      const worker = await Worker.create({
        connection: env.nativeConnection,
        taskQueue,
        workflowBundle: await workflowBundle(fixtures),
        activities: { greet: async (name: string) => `hello, ${name} from pid ${process.pid}` },
      });
      const result = await worker.runUntil(
        env.client.workflow.execute(greetingWorkflow, {
          args: ['kinesis'],
          taskQueue,
          workflowId: uniqueName('greet'),
        }),
      );
      assert.equal(result, `hello, kinesis from pid ${process.pid}`);
      const system = await env.connection.workflowService.getSystemInfo({});
      assert.ok(system.serverVersion, 'the dev server reports its version');
    } finally {
      await env.teardown();
    }
  });

  test('a day of hourly timers finishes in seconds on the time-skipping test server', async () => {
    const env = await createTimeSkippingEnv();
    try {
      assert.equal(env.supportsTimeSkipping, true);
      const taskQueue = uniqueName('timers');
      const worker = await Worker.create({
        connection: env.nativeConnection,
        taskQueue,
        workflowBundle: await workflowBundle(fixtures),
        activities: {},
      });
      const wallStart = Date.now();
      const serverStart = await env.currentTimeMs();
      const fired = await worker.runUntil(
        env.client.workflow.execute(hourlyTimersWorkflow, { args: [24], taskQueue, workflowId: uniqueName('timers') }),
      );
      const skippedMs = (await env.currentTimeMs()) - serverStart;
      assert.equal(fired, 24);
      assert.ok(skippedMs >= 24 * 3600_000, `server time moved ${skippedMs} ms`);
      assert.ok(Date.now() - wallStart < 60_000, 'took under a minute of wall time');
    } finally {
      await env.teardown();
    }
  });
});

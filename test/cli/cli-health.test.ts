/**
 * The worker's health endpoints (the Docker HEALTHCHECK and the Kubernetes probes use them): live and ready while it
 * polls, not ready once a graceful shutdown begins, gone when it has stopped.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LIVENESS_PATH, READINESS_PATH } from '../../src/cli/health-server';
import { getFreePort } from '../../src/dev/net';
import { startCliWorker } from '../helpers/cli-worker';
import { kclTestContext, type KclTestContext } from '../helpers/kcl';
import { uniqueName } from '../helpers/stack';

async function probe(port: number, path: string): Promise<number | 'refused'> {
  try {
    return (await fetch(`http://127.0.0.1:${port}${path}`)).status;
  } catch {
    return 'refused';
  }
}

describe('worker health endpoints', () => {
  let context: KclTestContext;
  before(async () => {
    context = await kclTestContext();
  });
  after(async () => {
    await context.close();
  });

  test('/healthz and /readyz answer 200 while the worker runs; /readyz turns 503 at SIGTERM; both go with the process', async () => {
    const port = await getFreePort();
    const worker = await startCliWorker({
      recordsFile: join(mkdtempSync(join(tmpdir(), 'kcl-health-')), 'records.jsonl'),
      env: {
        TEMPORAL_ADDRESS: context.stack.temporalAddress,
        TEMPORAL_NAMESPACE: context.stack.namespace,
        TEMPORAL_KCL_TASK_QUEUE: uniqueName('health-tq'),
        TEMPORAL_KCL_HEALTH_PORT: String(port),
        AWS_REGION: context.stack.aws.region,
        KINESIS_ENDPOINT: context.stack.aws.kinesisEndpoint,
        DYNAMODB_ENDPOINT: context.stack.aws.dynamoDbEndpoint,
        AWS_ACCESS_KEY_ID: 'local',
        AWS_SECRET_ACCESS_KEY: 'local',
      },
    });
    try {
      assert.equal(await probe(port, LIVENESS_PATH), 200);
      assert.equal(await probe(port, READINESS_PATH), 200);
      assert.equal(await probe(port, '/other'), 404);
      process.kill(worker.pid, 'SIGTERM');
      await worker.waitForOutput(/shutting down gracefully/);
      const readiness: (number | 'refused')[] = [];
      for (let i = 0; i < 50 && !readiness.includes('refused'); i++) {
        readiness.push(await probe(port, READINESS_PATH));
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.ok(!readiness.includes(200), `not ready once stopping: ${readiness.join(',')}`);
      const code = await worker.exited;
      assert.equal(code, 0, worker.output());
      assert.equal(await probe(port, LIVENESS_PATH), 'refused');
    } finally {
      await worker.stop(0);
    }
  });
});

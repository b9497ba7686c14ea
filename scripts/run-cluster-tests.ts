/**
 * `npm run test:cluster`: provisions `temporal-kcl-cluster`, starts the local stack on a real Temporal cluster (PostgreSQL
 * and the four services as separate processes, see src/dev/cluster.ts) with kinesis-local and dynalite, and runs the
 * suite under test/cluster/ on it (once, under the default execution). Tests find the stack through the same
 * TEMPORAL_KCL_TEST_* variables as `npm test`'s, and restart cluster services through a small HTTP endpoint of this
 * process (TEMPORAL_KCL_TEST_CLUSTER_CONTROL: `POST /restart/<service>?signal=SIGKILL`), which owns the processes.
 *
 * Usage: tsx scripts/run-cluster-tests.ts [file or directory ...]   (default: test/cluster/)
 */
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { join, relative, resolve } from 'node:path';
import { CLUSTER_SERVICES, type ClusterService } from '../src/dev/cluster';
import { startDevStack } from '../src/dev/dev-stack';
import { getFreePort } from '../src/dev/net';

const root = resolve(__dirname, '..');

function testFiles(targets: string[]): string[] {
  const files: string[] = [];
  const visit = (path: string) => {
    if (statSync(path).isDirectory()) {
      for (const entry of readdirSync(path).sort()) visit(join(path, entry));
    } else if (/\.test\.ts$/.test(path)) {
      files.push(relative(root, path));
    }
  };
  for (const target of targets.length > 0 ? targets : ['test/cluster']) visit(resolve(root, target));
  return files;
}

async function main(): Promise<number> {
  const suiteStarted = Date.now();
  const files = testFiles(process.argv.slice(2));
  const log = (line: string) => console.log(`[cluster] ${line}`);
  // The cluster binary is resolved (built if need be) by the stack; the suite starts no dev server.
  const stackStarted = Date.now();
  const stack = await startDevStack({ temporal: { cluster: true }, log });
  const cluster = stack.temporal.cluster!;
  console.log(`[cluster] stack ready in ${Date.now() - stackStarted} ms; logs in ${stack.logDir}`);

  // Restarts of cluster services, asked for by the tests (they run in another process).
  const control = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://localhost');
    const match = /^\/restart\/(\w+)$/.exec(url.pathname);
    const service = match?.[1] as ClusterService | undefined;
    if (request.method !== 'POST' || !service || !CLUSTER_SERVICES.includes(service)) {
      response.writeHead(404).end(`POST /restart/<${CLUSTER_SERVICES.join('|')}>[?signal=SIGKILL]`);
      return;
    }
    const signal = (url.searchParams.get('signal') ?? 'SIGKILL') as NodeJS.Signals;
    cluster.restart(service, signal).then(
      (timing) => {
        log(`${service} restarted (${signal}): down in ${timing.downMs} ms, serving again ${timing.upMs} ms later`);
        response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(timing));
      },
      (error: unknown) => response.writeHead(500).end(error instanceof Error ? error.message : String(error)),
    );
  });
  const controlPort = await getFreePort();
  await new Promise<void>((done) => control.listen(controlPort, '127.0.0.1', done));

  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TEMPORAL_KCL_TEST_TEMPORAL_ADDRESS: stack.temporal.address,
    TEMPORAL_KCL_TEST_TEMPORAL_NAMESPACE: stack.temporal.namespace,
    TEMPORAL_KCL_TEST_TEMPORAL_UI_URL: stack.temporal.uiUrl ?? '',
    TEMPORAL_KCL_TEST_KINESIS_ENDPOINT: stack.kinesisEndpoint,
    TEMPORAL_KCL_TEST_DYNAMODB_ENDPOINT: stack.dynamoDbEndpoint,
    TEMPORAL_KCL_TEST_CLUSTER_CONTROL: `http://127.0.0.1:${controlPort}`,
  };
  // A process group of its own, as in npm test: whatever the tests start can be killed as a group.
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--test', '--test-reporter=spec', '--test-concurrency=1', '--test-timeout=300000', ...files],
    { cwd: root, env, stdio: 'inherit', detached: true },
  );
  let interrupted = false;
  const killGroup = () => {
    try {
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // the group is already gone
    }
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      interrupted = true;
      killGroup();
    });
  }
  const code = await new Promise<number>((done) => child.on('exit', (exitCode) => done(exitCode ?? 1)));
  killGroup();
  control.close();
  const stopping = Date.now();
  await stack.stop();
  console.log(
    `[cluster] stopped in ${Date.now() - stopping} ms; test:cluster took ${((Date.now() - suiteStarted) / 1000).toFixed(0)} s`,
  );
  return interrupted ? 130 : code;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);

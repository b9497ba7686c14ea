import { mkdirSync, mkdtempSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { ListStreamsCommand } from '@aws-sdk/client-kinesis';
import { Connection } from '@temporalio/client';
import { type AwsConfig, createDynamoDbClient, createKinesisClient, EMULATOR_CREDENTIALS } from '../aws/clients';
import { KCL_SEARCH_ATTRIBUTES, searchAttributeCliPairs } from '../search-attributes';
import { type FanOutServerOptions, type FanOutStats, startFanOutServer } from './fan-out-server';
import { startTemporalCluster, type TemporalCluster } from './cluster';
import { ManagedProcess } from './managed-process';
import { getFreePort, waitForHttpOk, waitForPort, waitUntil } from './net';
import { resolveTemporalCli } from './tools';

/** The Kinesis emulators the stack can run. */
export const KINESIS_EMULATORS = ['kinesis-local', 'kinesalite'] as const;
export type KinesisEmulator = (typeof KINESIS_EMULATORS)[number];

export interface DevStackOptions {
  temporal?: {
    /**
     * A real Temporal cluster instead of the dev server: PostgreSQL and the four services as separate processes (see
     * src/dev/cluster.ts; `dbFilename` does not apply, `metricsPort` neither: each service serves its own metrics).
     * @default false
     */
    cluster?: boolean;
    /** gRPC port. @default a free port */
    port?: number;
    /** Web UI port. @default a free port */
    uiPort?: number;
    /** Run without the Web UI. @default false */
    headless?: boolean;
    /** SQLite file that keeps workflows across restarts. @default in memory */
    dbFilename?: string;
    /** @default 'default' */
    namespace?: string;
    /** Server log level. @default 'warn' */
    logLevel?: string;
    /** Codec server the Web UI calls to decode payloads (see `temporal-kcl codec-server`). @default none */
    uiCodecEndpoint?: string;
    /** Extra `--dynamic-config-value KEY=JSON` settings. @default none */
    dynamicConfig?: Record<string, unknown>;
    /**
     * Serve the server's Prometheus metrics (e.g. the `action` counter) on this port at `/metrics`
     * (`--metrics-port`). @default none (no metrics endpoint)
     */
    metricsPort?: number;
  };
  kinesis?: {
    /** @default a free port */
    port?: number;
    /**
     * kinesis-local (kinesis-mock: faithful resharding, ChildShards, MillisBehindLatest) or kinesalite (in-process,
     * ~10x faster reads, no ChildShards; for throughput benchmarks).
     * @default 'kinesis-local'
     */
    emulator?: KinesisEmulator;
    /** Delay the emulator takes to create, delete and reshard streams. @default 0 (instant, for tests) */
    operationDelayMs?: number;
    /**
     * The enhanced fan-out front started in front of kinesis-local (src/dev/fan-out-server.ts); not started for
     * kinesalite, which has no stream consumers.
     * @default a free port, AWS's 5-minute subscriptions and 5-second takeover
     */
    fanOut?: Omit<FanOutServerOptions, 'emulatorEndpoint' | 'unref'>;
  };
  dynamoDb?: {
    /** @default a free port */
    port?: number;
  };
  /** Directory for the servers' logs. @default a new temporary directory */
  logDir?: string;
  /** Receives one line per step. @default no output */
  log?: (line: string) => void;
  /** Build missing tools (Temporal CLI) instead of failing. @default true */
  provision?: boolean;
  /**
   * Do not keep the process alive for the stack's sake: when nothing else is left to do the process exits and its exit
   * hook kills the servers (for test files that start a stack of their own). @default false
   */
  unref?: boolean;
}

export interface DevStack {
  temporal: {
    address: string;
    namespace: string;
    uiUrl: string | undefined;
    /** `http://127.0.0.1:<metricsPort>/metrics` when `metricsPort` was given; on a cluster, the frontend's. */
    metricsUrl: string | undefined;
    /** On a cluster: every service's metrics endpoint (sum a counter over them). */
    metricsUrls?: string[];
    /**
     * The dev server's process id (to measure it); undefined when the SDK runs a downloaded server, and on a cluster
     * (several processes: see `cluster.services`).
     */
    pid: number | undefined;
    /** The cluster's processes, ports and restarts, when `cluster` was asked for. */
    cluster?: TemporalCluster;
  };
  /** The Kinesis emulator itself (HTTP/1.1; kinesis-local also speaks HTTP/2, but not SubscribeToShard usably). */
  kinesisEndpoint: string;
  kinesisEmulator: KinesisEmulator;
  /**
   * The fan-out front (src/dev/fan-out-server.ts) in front of kinesis-local: SubscribeToShard over HTTP/2 as on AWS,
   * every other call forwarded. Undefined for kinesalite.
   */
  kinesisFanOutEndpoint: string | undefined;
  /** What the fan-out front has served so far (subscriptions, events, records, ...); undefined for kinesalite. */
  kinesisFanOutStats: (() => FanOutStats) | undefined;
  dynamoDbEndpoint: string;
  /** AWS settings for clients of this stack's emulators. */
  aws: Required<Pick<AwsConfig, 'region' | 'kinesisEndpoint' | 'dynamoDbEndpoint' | 'credentials'>>;
  logDir: string;
  /** Stops every server (SIGTERM, then SIGKILL after a grace period). Safe to call twice. */
  stop(): Promise<void>;
}

const REGION = 'us-east-1';

function listen(server: Server, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.closeAllConnections?.();
    server.close(() => resolve());
  });
}

interface Stoppable {
  name: string;
  stop(): Promise<void>;
}

async function startTemporal(
  options: NonNullable<DevStackOptions['temporal']>,
  logDir: string,
  provision: boolean,
  unref: boolean,
  log: (line: string) => void,
  started: Stoppable[],
): Promise<DevStack['temporal']> {
  const namespace = options.namespace ?? 'default';
  if (options.cluster) {
    const cluster = await startTemporalCluster({
      namespace,
      ...(options.port === undefined ? {} : { frontendPort: options.port }),
      ...(options.uiPort === undefined ? {} : { uiPort: options.uiPort }),
      ...(options.headless ? { headless: true } : {}),
      ...(options.logLevel ? { logLevel: options.logLevel } : {}),
      ...(options.uiCodecEndpoint ? { uiCodecEndpoint: options.uiCodecEndpoint } : {}),
      ...(options.dynamicConfig ? { dynamicConfig: options.dynamicConfig } : {}),
      logDir,
      provision,
      unref,
      log,
    });
    started.push({ name: 'temporal cluster', stop: () => cluster.stop() });
    return {
      address: cluster.address,
      namespace,
      uiUrl: cluster.uiUrl,
      // The frontend counts the `action`s (the other services have no such series today).
      metricsUrl: cluster.services.frontend.metricsUrl,
      metricsUrls: Object.values(cluster.services).map((service) => service.metricsUrl),
      pid: undefined,
      cluster,
    };
  }
  const port = options.port ?? (await getFreePort());
  const headless = options.headless ?? false;
  const uiPort = headless ? undefined : (options.uiPort ?? (await getFreePort()));
  const cli = await resolveTemporalCli({ build: provision, log });
  const address = `127.0.0.1:${port}`;
  const uiUrl = uiPort === undefined ? undefined : `http://127.0.0.1:${uiPort}`;
  const metricsArgs = options.metricsPort === undefined ? [] : ['--metrics-port', String(options.metricsPort)];
  const metricsUrl = options.metricsPort === undefined ? undefined : `http://127.0.0.1:${options.metricsPort}/metrics`;

  if (cli.path === undefined) {
    // No Go toolchain: let the SDK download a dev server (needs internet). @temporalio/testing is loaded lazily.
    const { TestWorkflowEnvironment } = await import('@temporalio/testing');
    const env = await TestWorkflowEnvironment.createLocal({
      server: {
        ip: '127.0.0.1',
        port,
        namespace,
        ...(uiPort === undefined ? {} : { ui: true, uiPort }),
        ...(options.dbFilename ? { dbFilename: options.dbFilename } : {}),
        searchAttributes: [...KCL_SEARCH_ATTRIBUTES],
        ...(metricsArgs.length > 0 ? { extraArgs: metricsArgs } : {}),
      },
    });
    started.push({ name: 'temporal (SDK download)', stop: () => env.teardown() });
    return { address: env.address, namespace, uiUrl, metricsUrl, pid: undefined };
  }

  const args = [
    'server',
    'start-dev',
    '--ip',
    '127.0.0.1',
    '--port',
    String(port),
    '--namespace',
    namespace,
    '--log-format',
    'pretty',
    '--log-level',
    options.logLevel ?? 'warn',
    ...searchAttributeCliPairs().flatMap((pair) => ['--search-attribute', pair]),
    ...Object.entries(options.dynamicConfig ?? {}).flatMap(([key, value]) => [
      '--dynamic-config-value',
      `${key}=${JSON.stringify(value)}`,
    ]),
    ...metricsArgs,
  ];
  if (uiPort === undefined) args.push('--headless');
  else args.push('--ui-port', String(uiPort));
  if (options.uiCodecEndpoint) args.push('--ui-codec-endpoint', options.uiCodecEndpoint);
  if (options.dbFilename) {
    mkdirSync(dirname(options.dbFilename), { recursive: true });
    args.push('--db-filename', options.dbFilename);
  }
  const server = new ManagedProcess({
    name: 'temporal',
    command: cli.path,
    args,
    logFile: join(logDir, 'temporal.log'),
    unref,
  });
  started.push({ name: 'temporal', stop: () => server.stop() });
  log(`temporal: starting ${cli.path} ${args.join(' ')}`);
  const exitedEarly = server.exited.then(() => {
    throw server.failure('exited during start-up');
  });
  const ready = (async () => {
    await waitForPort(port, 60_000);
    const connection = await Connection.connect({ address, connectTimeout: 5_000 });
    try {
      await waitUntil(
        'temporal frontend',
        () => connection.workflowService.describeNamespace({ namespace }),
        60_000,
        200,
      );
    } finally {
      await connection.close();
    }
    if (metricsUrl) {
      await waitUntil(
        'temporal metrics',
        async () => {
          const response = await fetch(metricsUrl);
          if (!response.ok) throw new Error(`HTTP ${response.status}`);
          await response.text();
        },
        60_000,
        200,
      );
    }
    if (uiUrl) {
      await waitForHttpOk('temporal web UI', uiUrl);
    }
  })();
  try {
    await Promise.race([ready, exitedEarly]);
  } catch (error) {
    throw server.failure('did not become ready', error);
  } finally {
    exitedEarly.catch(() => undefined);
  }
  return { address, namespace, uiUrl, metricsUrl, pid: server.pid };
}

async function startKinesis(
  options: NonNullable<DevStackOptions['kinesis']> & { unref?: boolean },
  logDir: string,
  started: Stoppable[],
): Promise<string> {
  const port = options.port ?? (await getFreePort());
  const delayMs = options.operationDelayMs ?? 0;
  if ((options.emulator ?? 'kinesis-local') === 'kinesalite') {
    // kinesalite is a devDependency (benchmarks): loaded only when asked for.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const kinesalite = require('kinesalite') as (options: object) => Server;
    const server = kinesalite({
      createStreamMs: delayMs,
      deleteStreamMs: delayMs,
      updateStreamMs: delayMs,
      shardLimit: 10_000,
    });
    await listen(server, port);
    if (options.unref) server.unref();
    started.push({ name: 'kinesalite', stop: () => close(server) });
    return `http://127.0.0.1:${port}`;
  }
  const packageDir = dirname(require.resolve('kinesis-local/package.json'));
  const tlsPort = await getFreePort();
  const duration = `${delayMs}ms`;
  const server = new ManagedProcess({
    name: 'kinesis-local',
    command: process.execPath,
    args: [join(packageDir, 'main.js')],
    env: {
      ...process.env,
      KINESIS_MOCK_CERT_PATH: join(packageDir, 'server.json'),
      KINESIS_MOCK_PLAIN_PORT: String(port),
      KINESIS_MOCK_TLS_PORT: String(tlsPort),
      CREATE_STREAM_DURATION: duration,
      DELETE_STREAM_DURATION: duration,
      REGISTER_STREAM_CONSUMER_DURATION: duration,
      DEREGISTER_STREAM_CONSUMER_DURATION: duration,
      MERGE_SHARDS_DURATION: duration,
      SPLIT_SHARD_DURATION: duration,
      START_STREAM_ENCRYPTION_DURATION: duration,
      STOP_STREAM_ENCRYPTION_DURATION: duration,
      UPDATE_SHARD_COUNT_DURATION: duration,
      UPDATE_STREAM_MODE_DURATION: duration,
      SHARD_LIMIT: '10000',
      AWS_REGION: REGION,
      LOG_LEVEL: 'WARN',
    },
    logFile: join(logDir, 'kinesis-local.log'),
    unref: options.unref,
  });
  started.push({ name: 'kinesis-local', stop: () => server.stop() });
  const endpoint = `http://127.0.0.1:${port}`;
  const client = createKinesisClient({
    region: REGION,
    kinesisEndpoint: endpoint,
    credentials: EMULATOR_CREDENTIALS,
    maxAttempts: 1,
  });
  try {
    await waitForPort(port, 60_000);
    await waitUntil('kinesis-local', () => client.send(new ListStreamsCommand({})), 30_000);
  } catch (error) {
    throw server.failure('did not become ready', error);
  } finally {
    client.destroy();
  }
  return endpoint;
}

async function startDynamoDb(
  options: NonNullable<DevStackOptions['dynamoDb']> & { unref?: boolean },
  started: Stoppable[],
): Promise<string> {
  const port = options.port ?? (await getFreePort());
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const dynalite = require('dynalite') as (options: object) => Server;
  const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  await listen(server, port);
  if (options.unref) server.unref();
  started.push({ name: 'dynalite', stop: () => close(server) });
  const endpoint = `http://127.0.0.1:${port}`;
  const client = createDynamoDbClient({
    region: REGION,
    dynamoDbEndpoint: endpoint,
    credentials: EMULATOR_CREDENTIALS,
  });
  try {
    await waitUntil('dynalite', () => client.send(new ListTablesCommand({})), 10_000);
  } finally {
    client.destroy();
  }
  return endpoint;
}

/**
 * Starts the local stack temporal-kcl runs against: the Temporal dev server (with its Web UI and temporal-kcl's search
 * attributes), a Kinesis emulator and dynalite, each on a free loopback port, each answering a real request before this
 * resolves. If any part fails to start, the parts already started are stopped.
 */
export async function startDevStack(options: DevStackOptions = {}): Promise<DevStack> {
  const log = options.log ?? (() => undefined);
  const logDir = options.logDir ?? mkdtempSync(join(tmpdir(), 'temporal-kcl-stack-'));
  mkdirSync(logDir, { recursive: true });
  const started: Stoppable[] = [];
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      const results = await Promise.allSettled(started.reverse().map((part) => part.stop()));
      const failed = results.filter((result): result is PromiseRejectedResult => result.status === 'rejected');
      if (failed.length > 0)
        throw new AggregateError(
          failed.map((f) => f.reason as unknown),
          'stopping the dev stack',
        );
    })();
    return stopping;
  };
  try {
    const kinesisEmulator = options.kinesis?.emulator ?? 'kinesis-local';
    // Temporal takes longest: start the emulators while it comes up.
    // allSettled, not all: a part that fails must not leave the others starting unobserved.
    const [temporalResult, kinesisResult, dynamoDbResult] = await Promise.allSettled([
      startTemporal(options.temporal ?? {}, logDir, options.provision ?? true, options.unref ?? false, log, started),
      startKinesis({ ...options.kinesis, unref: options.unref }, logDir, started),
      startDynamoDb({ ...options.dynamoDb, unref: options.unref }, started),
    ]);
    for (const result of [temporalResult, kinesisResult, dynamoDbResult]) {
      if (result.status === 'rejected') throw result.reason;
    }
    const temporal = (temporalResult as PromiseFulfilledResult<DevStack['temporal']>).value;
    const kinesisEndpoint = (kinesisResult as PromiseFulfilledResult<string>).value;
    const dynamoDbEndpoint = (dynamoDbResult as PromiseFulfilledResult<string>).value;
    let kinesisFanOutEndpoint: string | undefined;
    let kinesisFanOutStats: (() => FanOutStats) | undefined;
    if (kinesisEmulator === 'kinesis-local') {
      const fanOut = await startFanOutServer({
        ...options.kinesis?.fanOut,
        emulatorEndpoint: kinesisEndpoint,
        unref: options.unref ?? false,
      });
      started.push({ name: 'kinesis fan-out', stop: () => fanOut.close() });
      kinesisFanOutEndpoint = fanOut.endpoint;
      kinesisFanOutStats = () => ({ ...fanOut.stats });
    }
    log(`kinesis (${kinesisEmulator}): ${kinesisEndpoint}`);
    if (kinesisFanOutEndpoint) log(`kinesis fan-out (SubscribeToShard): ${kinesisFanOutEndpoint}`);
    log(`dynamodb (dynalite): ${dynamoDbEndpoint}`);
    log(
      `temporal: ${temporal.address} namespace ${temporal.namespace}${temporal.uiUrl ? `, web UI ${temporal.uiUrl}` : ''}`,
    );
    return {
      temporal,
      kinesisEndpoint,
      kinesisEmulator,
      kinesisFanOutEndpoint,
      kinesisFanOutStats,
      dynamoDbEndpoint,
      aws: { region: REGION, kinesisEndpoint, dynamoDbEndpoint, credentials: EMULATOR_CREDENTIALS },
      logDir,
      stop,
    };
  } catch (error) {
    await stop().catch(() => undefined);
    throw error;
  }
}

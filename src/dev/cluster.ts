/**
 * A real Temporal cluster on one host, for `temporal-kcl dev --cluster` (`npm run cluster`) and `npm run test:cluster`:
 * PostgreSQL from the system (an unprivileged instance in a temporary directory), the schema set up with Temporal's SQL
 * tool, and the four Temporal services (history, matching, frontend, worker) as separate processes with SQL visibility,
 * plus the Web UI in front of the frontend. Everything runs from `temporal-kcl-cluster` (tools/temporal-cluster).
 *
 * Each service can be killed and started again with the same configuration (`restart`), as a test of what a consumer
 * lives through when a Temporal service restarts.
 */
import { chownSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Connection } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time';
import { temporal } from '@temporalio/proto';
import { KCL_SEARCH_ATTRIBUTES } from '../search-attributes';
import { CLUSTER_SERVICES, type ClusterPorts, type ClusterService, writeClusterConfig } from './cluster-config';
import { ManagedProcess } from './managed-process';
import { getFreeLowPort, waitForHttpOk, waitForPort, waitUntil } from './net';
import { execFileText, postgresBin, postgresUser, startPostgres } from './postgres';
import { resolveTemporalCluster } from './tools';

export { CLUSTER_SERVICES, type ClusterService } from './cluster-config';

export interface TemporalClusterOptions {
  /** @default 'default' */
  namespace?: string;
  /** Frontend gRPC port. @default a free port */
  frontendPort?: number;
  /** Web UI port. @default a free port */
  uiPort?: number;
  /** Run without the Web UI. @default false */
  headless?: boolean;
  /** Server log level. @default 'warn' */
  logLevel?: string;
  /** Codec server the Web UI calls to decode payloads. @default none */
  uiCodecEndpoint?: string;
  /** Dynamic config values (file-based, polled every 10 s), on top of the dev server's defaults. @default none */
  dynamicConfig?: Record<string, unknown>;
  /** History shards (fixed for the life of the database). @default 4 */
  numHistoryShards?: number;
  /** Directory for the logs. @default the run directory's logs/ */
  logDir?: string;
  /** Build `temporal-kcl-cluster` when it is not cached. @default true */
  provision?: boolean;
  /** Do not keep the process alive for the cluster's sake (the exit hook still kills it). @default false */
  unref?: boolean;
  /** Receives one line per step. @default no output */
  log?: (line: string) => void;
}

export interface ClusterServiceInfo {
  grpcPort: number;
  membershipPort: number;
  metricsUrl: string;
  /** The running process's id; undefined while the service is down. */
  pid: number | undefined;
}

export interface TemporalCluster {
  address: string;
  namespace: string;
  uiUrl: string | undefined;
  /** Each service's Prometheus endpoint (the `action` counter is the frontend's). */
  services: Record<ClusterService, ClusterServiceInfo>;
  postgres: { url: string; dataDir: string; pid: number | undefined; version: string };
  /** The run directory: config/, logs/, pgdata/ (removed by `stop`). */
  runDir: string;
  logDir: string;
  /** The server version (e.g. 1.29.1). */
  serverVersion: string;
  /**
   * Kills one service (SIGKILL by default) and, once it has exited, starts it again with the same configuration and
   * ports; resolves when it serves again (the frontend: a namespace lookup answers; the others: their gRPC port).
   */
  restart(service: ClusterService, signal?: NodeJS.Signals): Promise<{ downMs: number; upMs: number }>;
  /** Stops the services, the UI, then PostgreSQL, and removes the run directory. Safe to call twice. */
  stop(): Promise<void>;
}

async function portsPerService(first?: number): Promise<Record<ClusterService, number>> {
  const ports = {} as Record<ClusterService, number>;
  for (const service of CLUSTER_SERVICES) {
    ports[service] = service === 'frontend' && first !== undefined ? first : await getFreeLowPort();
  }
  return ports;
}

/**
 * Starts a Temporal cluster: PostgreSQL, the schema, history, matching, frontend and worker as separate processes, the
 * Web UI; registers the namespace and temporal-kcl's search attributes. Resolves once a namespace lookup answers
 * through the frontend. If any part fails to start, what was started is stopped.
 */
export async function startTemporalCluster(options: TemporalClusterOptions = {}): Promise<TemporalCluster> {
  const log = options.log ?? (() => undefined);
  const namespace = options.namespace ?? 'default';
  const started = Date.now();
  const binary = (await resolveTemporalCluster({ build: options.provision ?? true, log })).path;
  const pgBin = await postgresBin(log);
  const pgUser = postgresUser();
  // In the system's temporary directory, not under ~/.cache: as root, the postgres user cannot enter /root.
  const runDir = mkdtempSync(join(tmpdir(), 'temporal-kcl-cluster-'));
  const configDir = join(runDir, 'config');
  const dataDir = join(runDir, 'pgdata');
  const socketDir = join(runDir, 'pgsock');
  const logDir = options.logDir ?? join(runDir, 'logs');
  for (const dir of [configDir, dataDir, socketDir, logDir]) mkdirSync(dir, { recursive: true });
  if (pgUser) {
    chownSync(runDir, pgUser.uid, pgUser.gid);
    for (const dir of [dataDir, socketDir]) chownSync(dir, pgUser.uid, pgUser.gid);
  }

  // Every port below 32768: membership ports must fit PostgreSQL's SMALLINT; the others too, for one rule.
  const ports: ClusterPorts = {
    postgres: await getFreeLowPort(),
    frontendHttp: await getFreeLowPort(),
    ui: options.headless ? undefined : (options.uiPort ?? (await getFreeLowPort())),
    grpc: await portsPerService(options.frontendPort),
    membership: await portsPerService(),
    metrics: await portsPerService(),
  };
  const address = `127.0.0.1:${ports.grpc.frontend}`;
  const uiUrl = ports.ui === undefined ? undefined : `http://127.0.0.1:${ports.ui}`;
  const processes = new Map<ClusterService | 'postgres' | 'ui', ManagedProcess>();
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      // Services before PostgreSQL: a service whose database is gone retries for seconds before it exits.
      await Promise.allSettled([...processes].filter(([name]) => name !== 'postgres').map(([, child]) => child.stop()));
      await processes.get('postgres')?.stop();
      rmSync(runDir, { recursive: true, force: true });
    })();
    return stopping;
  };

  try {
    const pgStarted = Date.now();
    const { postgres, version } = await startPostgres({
      bin: pgBin,
      user: pgUser,
      dataDir,
      socketDir,
      port: ports.postgres,
      logFile: join(logDir, 'postgres.log'),
      unref: options.unref,
    });
    processes.set('postgres', postgres);
    log(`postgres ${version}: 127.0.0.1:${ports.postgres} (data in ${dataDir}) after ${Date.now() - pgStarted} ms`);

    // The schema, from the SQL tool's embedded schema files.
    const schemaStarted = Date.now();
    const sql = ['sql-tool', '--ep', '127.0.0.1', '-p', String(ports.postgres), '-u', 'temporal', '--pl', 'postgres12'];
    for (const [database, schema] of [
      ['temporal', 'postgresql/v12/temporal'],
      ['temporal_visibility', 'postgresql/v12/visibility'],
    ] as const) {
      await execFileText(binary, [...sql, '--db', database, 'create-database']);
      await execFileText(binary, [...sql, '--db', database, 'setup-schema', '-v', '0.0']);
      await execFileText(binary, [...sql, '--db', database, 'update-schema', '--schema-name', schema]);
    }
    log(`schema: temporal and temporal_visibility set up in ${Date.now() - schemaStarted} ms`);

    writeClusterConfig(configDir, ports, {
      numHistoryShards: options.numHistoryShards ?? 4,
      logLevel: options.logLevel ?? 'warn',
      dynamicConfig: options.dynamicConfig,
    });
    const serverVersion = (await execFileText(binary, ['server', '--version'])).trim().split(' ').at(-1) ?? '?';

    const servicesStarted = Date.now();
    const startService = (service: ClusterService) => {
      const args = ['server', '--root', runDir, '--config', 'config', '--env', service, '--allow-no-auth'];
      const child = new ManagedProcess({
        name: `temporal ${service}`,
        command: binary,
        args: [...args, 'start', '--service', service],
        logFile: join(logDir, `${service}.log`),
        unref: options.unref,
      });
      processes.set(service, child);
      return child;
    };
    // History first, alone: on a fresh database the first service to start writes the cluster metadata record, and
    // services that start at the same moment race to insert it ("failed to initialize current cluster metadata").
    const history = startService('history');
    await Promise.race([
      waitForPort(ports.grpc.history, 60_000),
      history.exited.then(() => {
        throw history.failure('exited during start-up');
      }),
    ]);
    for (const service of CLUSTER_SERVICES.filter((name) => name !== 'history')) startService(service);
    if (ports.ui !== undefined) {
      processes.set(
        'ui',
        new ManagedProcess({
          name: 'temporal ui',
          command: binary,
          args: [
            'ui-server',
            '--ip',
            '127.0.0.1',
            '--port',
            String(ports.ui),
            '--frontend',
            address,
            ...(options.uiCodecEndpoint ? ['--codec-endpoint', options.uiCodecEndpoint] : []),
          ],
          logFile: join(logDir, 'ui.log'),
          unref: options.unref,
        }),
      );
    }
    const exitedEarly = Promise.race(
      [...processes].map(([, child]) =>
        child.exited.then(() => {
          throw child.failure('exited during start-up');
        }),
      ),
    );
    exitedEarly.catch(() => undefined);
    await Promise.race([registerNamespace(address, namespace, log), exitedEarly]);
    if (uiUrl) {
      await Promise.race([waitForHttpOk('temporal web UI', uiUrl), exitedEarly]);
    }
    log(
      `temporal cluster ${serverVersion}: 4 services serving after ${Date.now() - servicesStarted} ms ` +
        `(${Date.now() - started} ms in all)`,
    );

    const services = Object.fromEntries(
      CLUSTER_SERVICES.map((service) => [
        service,
        {
          grpcPort: ports.grpc[service],
          membershipPort: ports.membership[service],
          metricsUrl: `http://127.0.0.1:${ports.metrics[service]}/metrics`,
          get pid() {
            const child = processes.get(service);
            return child && !child.hasExited ? child.pid : undefined;
          },
        },
      ]),
    ) as Record<ClusterService, ClusterServiceInfo>;

    return {
      address,
      namespace,
      uiUrl,
      services,
      postgres: {
        url: `postgres://temporal@127.0.0.1:${ports.postgres}`,
        dataDir,
        get pid() {
          return postgres.hasExited ? undefined : postgres.pid;
        },
        version,
      },
      runDir,
      logDir,
      serverVersion,
      async restart(service, signal = 'SIGKILL') {
        const old = processes.get(service);
        const stopped = Date.now();
        if (old && !old.hasExited) {
          old.child.kill(signal);
          await old.exited;
        }
        const downMs = Date.now() - stopped;
        const restarted = Date.now();
        const child = startService(service);
        const exited = child.exited.then(() => {
          throw child.failure('exited after a restart');
        });
        exited.catch(() => undefined);
        await Promise.race([
          service === 'frontend'
            ? registerNamespace(address, namespace, () => undefined)
            : waitForPort(ports.grpc[service], 60_000),
          exited,
        ]);
        return { downMs, upMs: Date.now() - restarted };
      },
      stop,
    };
  } catch (error) {
    await stop().catch(() => undefined);
    throw error;
  }
}

/**
 * Registers the namespace (retention 1 day) and temporal-kcl's search attributes through the frontend, waiting for it
 * to serve; idempotent (a namespace or attribute already there is fine).
 */
async function registerNamespace(address: string, namespace: string, log: (line: string) => void): Promise<void> {
  const [host, port] = address.split(':');
  await waitForPort(Number(port), 60_000, host);
  const connection = await waitUntil('temporal frontend', () => Connection.connect({ address }), 60_000, 200);
  try {
    await waitUntil(
      'namespace registration',
      async () => {
        try {
          await connection.workflowService.registerNamespace({
            namespace,
            workflowExecutionRetentionPeriod: msToTs('1 day'),
          });
          log(`temporal cluster: namespace ${namespace} registered`);
        } catch (error) {
          if (!/already exists/i.test(error instanceof Error ? error.message : String(error))) throw error;
        }
      },
      60_000,
      250,
    );
    await waitUntil('namespace', () => connection.workflowService.describeNamespace({ namespace }), 60_000, 200);
    const types = new Map<string, temporal.api.enums.v1.IndexedValueType>(
      KCL_SEARCH_ATTRIBUTES.map((key) => [
        key.name,
        temporal.api.enums.v1.IndexedValueType[`INDEXED_VALUE_TYPE_${key.type}`],
      ]),
    );
    const wanted = [...types.keys()];
    await waitUntil(
      'search attributes',
      async () => {
        const listed = await connection.operatorService.listSearchAttributes({ namespace });
        const missing = wanted.filter((name) => !(name in (listed.customAttributes ?? {})));
        if (missing.length === 0) return;
        await connection.operatorService.addSearchAttributes({
          namespace,
          searchAttributes: Object.fromEntries(missing.map((name) => [name, types.get(name)!])),
        });
        throw new Error(`added ${missing.join(', ')}; checking again`);
      },
      60_000,
      250,
    );
  } finally {
    await connection.close();
  }
}

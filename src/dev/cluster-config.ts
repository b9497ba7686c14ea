/**
 * The configuration of a local Temporal cluster (src/dev/cluster.ts): one directory for the four services, `base.yaml`
 * for all and `<service>.yaml` (loaded with `--env <service>`) for each one's metrics port, plus the dynamic config.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The Temporal services, in the order they start (history first: the others look it up in the ring). */
export const CLUSTER_SERVICES = ['history', 'matching', 'frontend', 'worker'] as const;
export type ClusterService = (typeof CLUSTER_SERVICES)[number];

/** The Temporal CLI dev server's dynamic config, plus what temporal-kcl's tests rely on. */
const DYNAMIC_CONFIG_DEFAULTS: Record<string, unknown> = {
  'history.hostLevelCacheMaxSize': 8096,
  'frontend.namespaceRPS.visibility': 100,
  'limit.maxIDLength': 255,
  'frontend.enableUpdateWorkflowExecution': true,
  'frontend.enableExecuteMultiOperation': true,
};

/** The ports of one cluster: all below 32768 (membership ports live in a SMALLINT column of the schema). */
export interface ClusterPorts {
  postgres: number;
  frontendHttp: number;
  ui: number | undefined;
  grpc: Record<ClusterService, number>;
  membership: Record<ClusterService, number>;
  metrics: Record<ClusterService, number>;
}

function yamlValue(value: unknown): string {
  return JSON.stringify(value);
}

function baseConfig(
  ports: ClusterPorts,
  numHistoryShards: number,
  logLevel: string,
  dynamicConfigFile: string,
): string {
  const datastore = (database: string, conns: number) => `      sql:
        pluginName: postgres12
        databaseName: ${database}
        connectAddr: "127.0.0.1:${ports.postgres}"
        connectProtocol: tcp
        user: temporal
        password: ""
        maxConns: ${conns}
        maxIdleConns: ${conns}
        maxConnLifetime: 1h`;
  const rpc = (service: ClusterService) =>
    `    rpc: { grpcPort: ${ports.grpc[service]}, membershipPort: ${ports.membership[service]}, ` +
    `${service === 'frontend' ? `httpPort: ${ports.frontendHttp}, ` : ''}bindOnIP: 127.0.0.1 }`;
  return `# Written by temporal-kcl (src/dev/cluster.ts): four services on one host, one PostgreSQL.
log:
  stdout: true
  level: ${logLevel}
persistence:
  defaultStore: postgres-default
  visibilityStore: postgres-visibility
  numHistoryShards: ${numHistoryShards}
  datastores:
    postgres-default:
${datastore('temporal', 20)}
    postgres-visibility:
${datastore('temporal_visibility', 5)}
global:
  membership:
    maxJoinDuration: 30s
    broadcastAddress: 127.0.0.1
services:
${CLUSTER_SERVICES.map((service) => `  ${service}:\n${rpc(service)}`).join('\n')}
clusterMetadata:
  enableGlobalNamespace: false
  failoverVersionIncrement: 10
  masterClusterName: active
  currentClusterName: active
  clusterInformation:
    active:
      enabled: true
      initialFailoverVersion: 1
      rpcName: frontend
      rpcAddress: "127.0.0.1:${ports.grpc.frontend}"
      httpAddress: "127.0.0.1:${ports.frontendHttp}"
dcRedirectionPolicy:
  policy: noop
archival:
  history: { state: disabled }
  visibility: { state: disabled }
namespaceDefaults:
  archival:
    history: { state: disabled }
    visibility: { state: disabled }
publicClient:
  hostPort: "127.0.0.1:${ports.grpc.frontend}"
dynamicConfigClient:
  filepath: ${yamlValue(dynamicConfigFile)}
  pollInterval: 10s
`;
}

/** Writes the cluster's config directory. */
export function writeClusterConfig(
  configDir: string,
  ports: ClusterPorts,
  options: { numHistoryShards: number; logLevel: string; dynamicConfig: Record<string, unknown> | undefined },
): void {
  const dynamicConfigFile = join(configDir, 'dynamicconfig.yaml');
  writeFileSync(
    dynamicConfigFile,
    Object.entries({ ...DYNAMIC_CONFIG_DEFAULTS, ...options.dynamicConfig })
      .map(([key, value]) => `${key}:\n  - value: ${yamlValue(value)}\n`)
      .join(''),
  );
  writeFileSync(
    join(configDir, 'base.yaml'),
    baseConfig(ports, options.numHistoryShards, options.logLevel, dynamicConfigFile),
  );
  for (const service of CLUSTER_SERVICES) {
    writeFileSync(
      join(configDir, `${service}.yaml`),
      `global:\n  metrics:\n    prometheus:\n      framework: tally\n      timerType: histogram\n      listenAddress: "127.0.0.1:${ports.metrics[service]}"\n`,
    );
  }
}

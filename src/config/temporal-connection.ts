/**
 * Where and how to reach Temporal, read the way the `temporal` CLI reads it (`@temporalio/envconfig`): a profile of the
 * TOML config file (`temporal.toml`, `TEMPORAL_CONFIG_FILE`, `--config-file`; profile `TEMPORAL_PROFILE` / `--profile`),
 * overridden by the environment (`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, `TEMPORAL_TLS*`,
 * `TEMPORAL_GRPC_META_*`), overridden by explicit flags.
 */
import { existsSync } from 'node:fs';
import type { TLSConfig } from '@temporalio/client';
import { type ClientConfigTLS, loadClientConfigProfile, toClientOptions } from '@temporalio/envconfig';
import { InvalidConfigError } from '../errors';
import { ENVIRONMENT_VARIABLES } from './environment';

/** Flags that override the profile and the environment (the `temporal` CLI's names). */
export interface TemporalConnectionFlags {
  address?: string;
  namespace?: string;
  apiKey?: string;
  /** `--tls`: force TLS on (with the system's CAs unless a CA is given). */
  tls?: boolean;
  tlsCaPath?: string;
  tlsCertPath?: string;
  tlsKeyPath?: string;
  tlsServerName?: string;
  profile?: string;
  configFile?: string;
}

/** The resolved connection: what `Connection.connect` and `NativeConnection.connect` take, plus the namespace. */
export interface TemporalConnectionSettings {
  address: string;
  namespace: string;
  apiKey?: string;
  /** TLS settings; absent or false for plain gRPC. An API key turns TLS on unless it is disabled explicitly. */
  tls?: TLSConfig | boolean;
  /** Extra gRPC metadata (`grpc_meta` of the profile, `TEMPORAL_GRPC_META_*`). */
  metadata?: Record<string, string>;
  /** The profile used, for messages (absent when no config file was found). */
  profile?: string;
}

const ADDRESS = /^[^\s:/]+:\d{1,5}$/;

/** Reads profile, environment and flags (flags win over the environment, which wins over the profile). */
export function resolveTemporalConnection(
  flags: TemporalConnectionFlags = {},
  env: NodeJS.ProcessEnv = process.env,
): TemporalConnectionSettings {
  if (flags.configFile !== undefined && !existsSync(flags.configFile)) {
    throw new InvalidConfigError(`--config-file ${flags.configFile} not found`);
  }
  if (Boolean(flags.tlsCertPath) !== Boolean(flags.tlsKeyPath)) {
    throw new InvalidConfigError('--tls-cert-path and --tls-key-path go together (a client certificate and its key)');
  }
  const overrideEnvVars = Object.fromEntries(
    Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined && entry[1] !== ''),
  );
  let profile;
  try {
    profile = loadClientConfigProfile({
      ...(flags.profile ? { profile: flags.profile } : {}),
      ...(flags.configFile ? { configSource: { path: flags.configFile } } : {}),
      overrideEnvVars,
    });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const file = flags.configFile ?? env.TEMPORAL_CONFIG_FILE ?? 'the default temporal.toml';
    throw new InvalidConfigError(`cannot read the Temporal client config (${file}): ${message}`);
  }

  const tls: ClientConfigTLS | undefined =
    flags.tls || flags.tlsCaPath || flags.tlsCertPath || flags.tlsServerName
      ? {
          ...profile.tls,
          disabled: false,
          ...(flags.tlsCaPath ? { serverCACert: { path: flags.tlsCaPath } } : {}),
          ...(flags.tlsCertPath ? { clientCert: { path: flags.tlsCertPath } } : {}),
          ...(flags.tlsKeyPath ? { clientKey: { path: flags.tlsKeyPath } } : {}),
          ...(flags.tlsServerName ? { serverName: flags.tlsServerName } : {}),
        }
      : profile.tls;
  for (const [what, source] of [
    ['CA certificate', tls?.serverCACert],
    ['client certificate', tls?.clientCert],
    ['client key', tls?.clientKey],
  ] as const) {
    if (source && 'path' in source && !existsSync(source.path)) {
      throw new InvalidConfigError(`TLS ${what} ${source.path} not found`);
    }
  }
  const merged = {
    ...profile,
    ...(flags.address ? { address: flags.address } : {}),
    ...(flags.namespace ? { namespace: flags.namespace } : {}),
    ...(flags.apiKey ? { apiKey: flags.apiKey } : {}),
    ...(tls ? { tls } : {}),
  };
  const { connectionOptions, namespace } = toClientOptions(merged);
  const address = connectionOptions.address ?? ENVIRONMENT_VARIABLES.TEMPORAL_ADDRESS.default;
  if (!ADDRESS.test(address)) {
    throw new InvalidConfigError(
      `Temporal address '${address}' is not host:port (e.g. 127.0.0.1:7233 or my-ns.a1b2c.tmprl.cloud:7233); ` +
        'set --address, TEMPORAL_ADDRESS or the profile address',
    );
  }
  const apiKey = typeof connectionOptions.apiKey === 'string' ? connectionOptions.apiKey : undefined;
  const profileName = flags.profile ?? env.TEMPORAL_PROFILE;
  return {
    address,
    namespace: namespace || ENVIRONMENT_VARIABLES.TEMPORAL_NAMESPACE.default,
    ...(apiKey ? { apiKey } : {}),
    ...(connectionOptions.tls !== undefined && connectionOptions.tls !== null ? { tls: connectionOptions.tls } : {}),
    ...(connectionOptions.metadata && Object.keys(connectionOptions.metadata).length > 0
      ? { metadata: connectionOptions.metadata as Record<string, string> }
      : {}),
    ...(profileName ? { profile: profileName } : {}),
  };
}

/** Whether the connection uses TLS (an API key implies it unless TLS is disabled). */
export function usesTls(settings: Pick<TemporalConnectionSettings, 'tls' | 'apiKey'>): boolean {
  if (settings.tls === false) return false;
  return settings.tls !== undefined || settings.apiKey !== undefined;
}

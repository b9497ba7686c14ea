import type { DataConverter } from '@temporalio/common';
import type { NativeConnection } from '@temporalio/worker';
import { type Command, Option } from 'commander';
import type { AwsConfig } from '../aws/clients';
import { KclPayloadCodec, parseCodecKey } from '../codec/payload-codec';
import { connectClient as connectTemporalClient, connectWorker as connectTemporalWorker } from '../client/connection';
import { ENVIRONMENT_VARIABLES, readEnvironment } from '../config/environment';
import { resolveTemporalConnection, type TemporalConnectionFlags } from '../config/temporal-connection';

/** Flags shared by the commands that talk to Temporal; each falls back to its environment variable, then the profile. */
export interface TemporalFlags extends TemporalConnectionFlags {
  taskQueue?: string;
}

/** Flags shared by the commands that talk to AWS. */
export interface AwsFlags {
  region?: string;
  kinesisEndpoint?: string;
  dynamodbEndpoint?: string;
}

export function addTemporalOptions(command: Command): Command {
  const fromProfile = (what: string, fallback: string) => `${what} (default: the profile's, else "${fallback}")`;
  return command
    .addOption(
      new Option(
        '--address <host:port>',
        fromProfile('Temporal frontend host:port', ENVIRONMENT_VARIABLES.TEMPORAL_ADDRESS.default),
      ).env('TEMPORAL_ADDRESS'),
    )
    .addOption(
      new Option(
        '--namespace <name>',
        fromProfile('Temporal namespace', ENVIRONMENT_VARIABLES.TEMPORAL_NAMESPACE.default),
      ).env('TEMPORAL_NAMESPACE'),
    )
    .addOption(
      new Option('--task-queue <name>', 'task queue of temporal-kcl workers')
        .env('TEMPORAL_KCL_TASK_QUEUE')
        .default(ENVIRONMENT_VARIABLES.TEMPORAL_KCL_TASK_QUEUE.default),
    )
    .addOption(
      new Option('--profile <name>', 'profile of the Temporal client config file (default: default)').env(
        'TEMPORAL_PROFILE',
      ),
    )
    .addOption(
      new Option(
        '--config-file <path>',
        'Temporal client config file, as the temporal CLI reads it (default: ~/.config/temporalio/temporal.toml)',
      ).env('TEMPORAL_CONFIG_FILE'),
    )
    .addOption(
      new Option(
        '--api-key <key>',
        "Temporal API key, sent as `authorization: Bearer <key>`; turns TLS on (default: the profile's, else none)",
      ).env('TEMPORAL_API_KEY'),
    )
    .addOption(
      new Option(
        '--tls',
        'connect with TLS (system CAs unless --tls-ca-path) (env: TEMPORAL_TLS; default: off, on with an API key or TLS settings)',
      ),
    )
    .addOption(
      new Option(
        '--tls-ca-path <file>',
        "CA certificate (PEM) the server certificate must chain to (default: the profile's, else the system's CAs)",
      ).env('TEMPORAL_TLS_SERVER_CA_CERT_PATH'),
    )
    .addOption(
      new Option('--tls-cert-path <file>', "client certificate (PEM) for mTLS (default: the profile's, else none)").env(
        'TEMPORAL_TLS_CLIENT_CERT_PATH',
      ),
    )
    .addOption(
      new Option(
        '--tls-key-path <file>',
        "private key (PEM) of the client certificate (default: the profile's, else none)",
      ).env('TEMPORAL_TLS_CLIENT_KEY_PATH'),
    )
    .addOption(
      new Option('--tls-server-name <name>', 'server name to verify (default: the host of the address)').env(
        'TEMPORAL_TLS_SERVER_NAME',
      ),
    );
}

export function addAwsOptions(command: Command): Command {
  return command
    .addOption(
      new Option('--region <region>', "AWS region (default: the AWS profile's region, AWS_PROFILE)").env('AWS_REGION'),
    )
    .addOption(
      new Option(
        '--kinesis-endpoint <url>',
        'Kinesis endpoint, e.g. an emulator (default: AWS_ENDPOINT_URL_KINESIS, else AWS)',
      ).env('KINESIS_ENDPOINT'),
    )
    .addOption(
      new Option(
        '--dynamodb-endpoint <url>',
        'DynamoDB endpoint, e.g. an emulator (default: AWS_ENDPOINT_URL_DYNAMODB, else AWS)',
      ).env('DYNAMODB_ENDPOINT'),
    );
}

/** Settings from flags, then the environment, then the Temporal profile, then defaults, validated together. */
export function resolveSettings(flags: TemporalFlags & AwsFlags) {
  const env = readEnvironment({
    ...process.env,
    ...(flags.address ? { TEMPORAL_ADDRESS: flags.address } : {}),
    ...(flags.namespace ? { TEMPORAL_NAMESPACE: flags.namespace } : {}),
    ...(flags.taskQueue ? { TEMPORAL_KCL_TASK_QUEUE: flags.taskQueue } : {}),
    ...(flags.region ? { AWS_REGION: flags.region } : {}),
    ...(flags.kinesisEndpoint ? { KINESIS_ENDPOINT: flags.kinesisEndpoint } : {}),
    ...(flags.dynamodbEndpoint ? { DYNAMODB_ENDPOINT: flags.dynamodbEndpoint } : {}),
  });
  const temporal = resolveTemporalConnection(flags);
  const aws: AwsConfig = {
    ...(env.AWS_REGION ? { region: env.AWS_REGION } : {}),
    ...(env.KINESIS_ENDPOINT ? { kinesisEndpoint: env.KINESIS_ENDPOINT } : {}),
    ...(env.DYNAMODB_ENDPOINT ? { dynamoDbEndpoint: env.DYNAMODB_ENDPOINT } : {}),
  };
  const dataConverter: DataConverter | undefined = env.TEMPORAL_KCL_CODEC_KEY
    ? { payloadCodecs: [new KclPayloadCodec({ encryptionKey: parseCodecKey(env.TEMPORAL_KCL_CODEC_KEY) })] }
    : undefined;
  return {
    temporal,
    address: temporal.address,
    namespace: temporal.namespace,
    taskQueue: env.TEMPORAL_KCL_TASK_QUEUE,
    metricsPort: env.TEMPORAL_KCL_METRICS_PORT,
    aws,
    ...(dataConverter ? { dataConverter } : {}),
  };
}

export type Settings = ReturnType<typeof resolveSettings>;

/** A client connected to Temporal (namespace checked), or an error that says what to fix. */
export function connectClient(settings: Settings): ReturnType<typeof connectTemporalClient> {
  return connectTemporalClient(
    settings.temporal,
    settings.dataConverter ? { dataConverter: settings.dataConverter } : {},
  );
}

/** A worker connection to Temporal (namespace checked), or an error that says what to fix. */
export function connectWorker(settings: Settings): Promise<NativeConnection> {
  return connectTemporalWorker(settings.temporal);
}

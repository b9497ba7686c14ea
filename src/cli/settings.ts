import { Client, Connection } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import { NativeConnection } from '@temporalio/worker';
import { type Command, Option } from 'commander';
import type { AwsConfig } from '../aws/clients';
import { KclPayloadCodec, parseCodecKey } from '../codec/payload-codec';
import { readEnvironment } from '../config/environment';
import { KclError } from '../errors';

/** Flags shared by the commands that talk to Temporal; each falls back to its environment variable. */
export interface TemporalFlags {
  address?: string;
  namespace?: string;
  taskQueue?: string;
}

/** Flags shared by the commands that talk to AWS. */
export interface AwsFlags {
  region?: string;
  kinesisEndpoint?: string;
  dynamodbEndpoint?: string;
}

export function addTemporalOptions(command: Command): Command {
  return command
    .addOption(new Option('--address <host:port>', 'Temporal frontend address').env('TEMPORAL_ADDRESS'))
    .addOption(new Option('--namespace <name>', 'Temporal namespace').env('TEMPORAL_NAMESPACE'))
    .addOption(new Option('--task-queue <name>', 'task queue of temporal-kcl workers').env('TEMPORAL_KCL_TASK_QUEUE'));
}

export function addAwsOptions(command: Command): Command {
  return command
    .addOption(new Option('--region <region>', 'AWS region').env('AWS_REGION'))
    .addOption(
      new Option('--kinesis-endpoint <url>', 'Kinesis endpoint (an emulator or LocalStack)').env('KINESIS_ENDPOINT'),
    )
    .addOption(
      new Option('--dynamodb-endpoint <url>', 'DynamoDB endpoint (an emulator or LocalStack)').env('DYNAMODB_ENDPOINT'),
    );
}

/** Settings from flags, then the environment, then defaults, validated together. */
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
  const aws: AwsConfig = {
    region: env.AWS_REGION,
    ...(env.KINESIS_ENDPOINT ? { kinesisEndpoint: env.KINESIS_ENDPOINT } : {}),
    ...(env.DYNAMODB_ENDPOINT ? { dynamoDbEndpoint: env.DYNAMODB_ENDPOINT } : {}),
  };
  const dataConverter: DataConverter | undefined = env.TEMPORAL_KCL_CODEC_KEY
    ? { payloadCodecs: [new KclPayloadCodec({ encryptionKey: parseCodecKey(env.TEMPORAL_KCL_CODEC_KEY) })] }
    : undefined;
  return {
    address: env.TEMPORAL_ADDRESS,
    namespace: env.TEMPORAL_NAMESPACE,
    taskQueue: env.TEMPORAL_KCL_TASK_QUEUE,
    metricsPort: env.TEMPORAL_KCL_METRICS_PORT,
    aws,
    ...(dataConverter ? { dataConverter } : {}),
  };
}

/** Temporal could not be reached. */
export class TemporalUnreachableError extends KclError {
  override readonly name = 'TemporalUnreachable';
  constructor(
    readonly address: string,
    cause: unknown,
  ) {
    super(
      `cannot reach Temporal at ${address} (${cause instanceof Error ? cause.message : String(cause)}); ` +
        'start it (e.g. `temporal-kcl dev`) or point --address / TEMPORAL_ADDRESS at it',
      { cause },
    );
  }
}

/**
 * A client connected to Temporal, or a clear error. With a data converter (the payload codec, when
 * TEMPORAL_KCL_CODEC_KEY is set) it encodes what it sends and decodes what workers answer, as the workers do.
 */
export async function connectClient(settings: {
  address: string;
  namespace: string;
  dataConverter?: DataConverter;
}): Promise<{ client: Client; close: () => Promise<void> }> {
  try {
    const connection = await Connection.connect({ address: settings.address, connectTimeout: 5_000 });
    await connection.workflowService.getSystemInfo({});
    const client = new Client({
      connection,
      namespace: settings.namespace,
      ...(settings.dataConverter ? { dataConverter: settings.dataConverter } : {}),
    });
    return { client, close: () => connection.close() };
  } catch (error) {
    throw new TemporalUnreachableError(settings.address, error);
  }
}

/** A worker connection to Temporal, or a clear error. */
export async function connectWorker(settings: { address: string }): Promise<NativeConnection> {
  try {
    return await NativeConnection.connect({ address: settings.address });
  } catch (error) {
    throw new TemporalUnreachableError(settings.address, error);
  }
}

import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { KinesisClient } from '@aws-sdk/client-kinesis';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { InvalidConfigError } from '../errors';

/** Static credentials, for emulators and tests. In production leave them out and let the AWS SDK's default chain find them. */
export interface StaticCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/** Where and how to reach Kinesis and DynamoDB. */
export interface AwsConfig {
  /**
   * AWS region. @default the AWS SDK's region chain: `AWS_REGION`, then the region of the AWS profile (`AWS_PROFILE`,
   * `~/.aws/config`)
   */
  region?: string;
  /**
   * Kinesis endpoint override (an emulator or LocalStack), e.g. `http://127.0.0.1:4567`.
   * @default the AWS SDK's: `AWS_ENDPOINT_URL_KINESIS`, `AWS_ENDPOINT_URL`, the profile's `endpoint_url`, else AWS
   */
  kinesisEndpoint?: string;
  /**
   * DynamoDB endpoint override, e.g. `http://127.0.0.1:4568`.
   * @default the AWS SDK's: `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL`, the profile's `endpoint_url`, else AWS
   */
  dynamoDbEndpoint?: string;
  /** Static credentials. @default the AWS SDK's default credential provider chain */
  credentials?: StaticCredentials;
  /**
   * Attempts the AWS SDK makes per call before an error reaches the caller. temporal-kcl's activities
   * retry through Temporal retry policies (visible in the UI and in metrics), so consumers use 1.
   * @default 3 (the AWS SDK's own default)
   */
  maxAttempts?: number;
  /** Sockets kept per client. @default 256 */
  maxSockets?: number;
}

/** The credentials the local emulators accept (they check the format, not the values). */
export const EMULATOR_CREDENTIALS: StaticCredentials = { accessKeyId: 'local', secretAccessKey: 'local' };

function httpHandler(maxSockets: number): NodeHttpHandler {
  // HTTP/1.1 with keep-alive: the SDK's default HTTP/2 handler for Kinesis fails against kinesalite
  // and drops calls against kinesis-local; real Kinesis serves HTTP/1.1 just as well.
  return new NodeHttpHandler({
    httpAgent: new HttpAgent({ keepAlive: true, maxSockets }),
    httpsAgent: new HttpsAgent({ keepAlive: true, maxSockets }),
    connectionTimeout: 5_000,
    requestTimeout: 30_000,
  });
}

/** Region, credentials and attempts, as every client of temporal-kcl takes them (the request handler aside). */
function baseConfig(config: AwsConfig) {
  return {
    // No fallback of our own: the SDK's chain finds AWS_REGION or the profile's region.
    ...(config.region ? { region: config.region } : {}),
    // A copy: the SDK annotates the credentials object it is given.
    ...(config.credentials ? { credentials: { ...config.credentials } } : {}),
    ...(config.maxAttempts !== undefined ? { maxAttempts: config.maxAttempts } : {}),
  };
}

function commonConfig(config: AwsConfig) {
  return { ...baseConfig(config), requestHandler: httpHandler(config.maxSockets ?? 256) };
}

/** A Kinesis client on HTTP/1.1 keep-alive. */
export function createKinesisClient(config: AwsConfig = {}): KinesisClient {
  return new KinesisClient({
    ...commonConfig(config),
    ...(config.kinesisEndpoint ? { endpoint: config.kinesisEndpoint } : {}),
  });
}

/**
 * The Kinesis client enhanced fan-out subscribes with: `SubscribeToShard` needs HTTP/2, so it keeps the AWS SDK's own
 * handler (each subscription gets a session of its own). Everything else goes through {@link createKinesisClient}.
 */
export function createFanOutKinesisClient(config: AwsConfig = {}): KinesisClient {
  return new KinesisClient({
    ...baseConfig(config),
    ...(config.kinesisEndpoint ? { endpoint: config.kinesisEndpoint } : {}),
  });
}

/** A DynamoDB client on HTTP/1.1 keep-alive. */
export function createDynamoDbClient(config: AwsConfig = {}): DynamoDBClient {
  return new DynamoDBClient({
    ...commonConfig(config),
    ...(config.dynamoDbEndpoint ? { endpoint: config.dynamoDbEndpoint } : {}),
  });
}

/** Both clients from one config. */
export function createAwsClients(config: AwsConfig = {}): { kinesis: KinesisClient; dynamoDb: DynamoDBClient } {
  return { kinesis: createKinesisClient(config), dynamoDb: createDynamoDbClient(config) };
}

/**
 * The region the AWS SDK resolves for this config (flag, `AWS_REGION`, the profile's region), or an
 * {@link InvalidConfigError} saying where to set one.
 */
export async function resolveAwsRegion(config: AwsConfig = {}): Promise<string> {
  const client = createKinesisClient(config);
  try {
    return await client.config.region();
  } catch (error) {
    throw new InvalidConfigError(
      `no AWS region: set --region, AWS_REGION, or region in the AWS profile (${process.env.AWS_PROFILE ? `profile ${process.env.AWS_PROFILE}` : 'AWS_PROFILE'}, ~/.aws/config)` +
        ` (${error instanceof Error ? error.message : String(error)})`,
    );
  } finally {
    client.destroy();
  }
}

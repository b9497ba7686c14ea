import { z } from 'zod';
import { InvalidConfigError } from '../errors';

/**
 * The environment variables temporal-kcl reads (CLI and worker). Flags override them. docker-compose.yml and the README
 * use exactly these names; a test checks that they agree.
 */
export const ENVIRONMENT_VARIABLES = {
  TEMPORAL_ADDRESS: { description: 'Temporal frontend host:port', default: '127.0.0.1:7233' },
  TEMPORAL_NAMESPACE: { description: 'Temporal namespace', default: 'default' },
  TEMPORAL_KCL_TASK_QUEUE: { description: 'Task queue of temporal-kcl workers and workflows', default: 'temporal-kcl' },
  AWS_REGION: {
    description: 'AWS region of the stream and the lease table',
    default: undefined, // the AWS SDK's chain: AWS_REGION, then the region of the AWS profile (AWS_PROFILE)
  },
  KINESIS_ENDPOINT: {
    description: 'Kinesis endpoint override (an emulator or LocalStack); shorthand for AWS_ENDPOINT_URL_KINESIS',
    default: undefined,
  },
  DYNAMODB_ENDPOINT: {
    description: 'DynamoDB endpoint override (an emulator or LocalStack); shorthand for AWS_ENDPOINT_URL_DYNAMODB',
    default: undefined,
  },
  TEMPORAL_KCL_METRICS_PORT: { description: 'Port of the worker Prometheus endpoint (/metrics)', default: undefined },
  TEMPORAL_KCL_HEALTH_PORT: {
    description: 'Port of the worker health endpoints (/healthz liveness, /readyz readiness)',
    default: undefined,
  },
  TEMPORAL_KCL_MAX_SHARDS: {
    description: 'Most shards one worker holds (1-10000); shards no worker has room for wait in WAITING_FOR_WORKER',
    default: undefined,
  },
  TEMPORAL_KCL_CODEC_KEY: {
    description: 'AES-256 key (base64 or hex) that turns on the payload codec (gzip + AES-GCM) for workflow payloads',
    default: undefined,
  },
} as const;

export type EnvironmentVariable = keyof typeof ENVIRONMENT_VARIABLES;

/**
 * The Temporal client variables `@temporalio/envconfig` reads (as the `temporal` CLI does), besides TEMPORAL_ADDRESS and
 * TEMPORAL_NAMESPACE above; `TEMPORAL_GRPC_META_<NAME>` adds gRPC metadata.
 */
export const TEMPORAL_CLIENT_VARIABLES = [
  'TEMPORAL_API_KEY',
  'TEMPORAL_PROFILE',
  'TEMPORAL_CONFIG_FILE',
  'TEMPORAL_TLS',
  'TEMPORAL_TLS_SERVER_CA_CERT_PATH',
  'TEMPORAL_TLS_SERVER_CA_CERT_DATA',
  'TEMPORAL_TLS_CLIENT_CERT_PATH',
  'TEMPORAL_TLS_CLIENT_CERT_DATA',
  'TEMPORAL_TLS_CLIENT_KEY_PATH',
  'TEMPORAL_TLS_CLIENT_KEY_DATA',
  'TEMPORAL_TLS_SERVER_NAME',
] as const;

/**
 * Region, credentials and endpoints are left to the AWS SDK's default chains; these are the standard names they read
 * (besides AWS_REGION above). KINESIS_ENDPOINT / DYNAMODB_ENDPOINT, when set, win over the AWS_ENDPOINT_URL_* ones.
 */
export const AWS_STANDARD_VARIABLES = [
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
  'AWS_PROFILE',
  'AWS_CONFIG_FILE',
  'AWS_SHARED_CREDENTIALS_FILE',
  'AWS_ROLE_ARN',
  'AWS_WEB_IDENTITY_TOKEN_FILE',
  'AWS_ENDPOINT_URL',
  'AWS_ENDPOINT_URL_KINESIS',
  'AWS_ENDPOINT_URL_DYNAMODB',
] as const;

const endpoint = z.url({ protocol: /^https?$/, error: 'expected an http(s) URL such as http://127.0.0.1:4567' });

const schema = z.object({
  TEMPORAL_ADDRESS: z
    .string()
    .regex(/^[^\s:/]+:\d{1,5}$/, 'expected host:port, e.g. 127.0.0.1:7233')
    .default(ENVIRONMENT_VARIABLES.TEMPORAL_ADDRESS.default),
  TEMPORAL_NAMESPACE: z.string().min(1).default(ENVIRONMENT_VARIABLES.TEMPORAL_NAMESPACE.default),
  TEMPORAL_KCL_TASK_QUEUE: z.string().min(1).default(ENVIRONMENT_VARIABLES.TEMPORAL_KCL_TASK_QUEUE.default),
  AWS_REGION: z.string().min(1).optional(),
  KINESIS_ENDPOINT: endpoint.optional(),
  DYNAMODB_ENDPOINT: endpoint.optional(),
  TEMPORAL_KCL_METRICS_PORT: z.coerce.number().int().min(1).max(65535).optional(),
  TEMPORAL_KCL_HEALTH_PORT: z.coerce.number().int().min(1).max(65535).optional(),
  TEMPORAL_KCL_CODEC_KEY: z
    .string()
    .refine((value) => /^[0-9a-fA-F]{64}$/.test(value.trim()) || Buffer.from(value.trim(), 'base64').length === 32, {
      message: 'expected a 32-byte AES-256 key, base64 or hex (e.g. `openssl rand -base64 32`)',
    })
    .optional(),
});

export type Environment = z.infer<typeof schema>;

/** Reads and validates temporal-kcl's environment variables; empty values count as unset. */
export function readEnvironment(env: NodeJS.ProcessEnv = process.env): Environment {
  const present = Object.fromEntries(
    Object.keys(ENVIRONMENT_VARIABLES)
      .map((name) => [name, env[name]] as const)
      .filter(([, value]) => value !== undefined && value !== ''),
  );
  const result = schema.safeParse(present);
  if (!result.success) {
    const issues = result.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    throw new InvalidConfigError(`invalid environment: ${issues.join('; ')}`, issues);
  }
  return result.data;
}

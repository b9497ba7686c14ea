/**
 * temporal-kcl: the Kinesis Client Library as durable Temporal workflows.
 */
// Writing processors
export * from './record-processor';
export * from './positions';
// Running workers
export { createKclWorker, type KclWorker, type KclWorkerOptions } from './worker';
export type { DeadLetterEntry, DeadLetterHandler } from './activities';
export {
  createAwsClients,
  createDynamoDbClient,
  createKinesisClient,
  type AwsConfig,
  type StaticCredentials,
} from './aws/clients';
// Starting, stopping, inspecting consumers
export * from './client/consumers';
export {
  shardConsumerWorkflow,
  stopSignal,
  retrySignal,
  progressQuery,
  type ShardConsumerInput,
} from './workflows/shard-consumer';
export {
  streamConsumerWorkflow,
  streamProgressQuery,
  type StreamConsumerInput,
  type StreamConsumerResult,
  type StreamProgress,
} from './workflows/stream-consumer';
export { shardEndedSignal, type ShardEnded } from './workflows/stream-consumer-signals';
export * from './ids';
export {
  DEFAULT_SHARD_WORKFLOW_TASK_TIMEOUT_MS,
  FailureAction,
  InitialPosition,
  type OptionsValidation,
  type ResolvedShardConsumerOptions,
  type ShardConsumerOptions,
  validateShardConsumerOptions,
} from './options';
export * from './consumer-types';
export * from './search-attributes';
export { FailureType } from './failure-types';
export * from './errors';
// Payload codec
export { KclPayloadCodec, parseCodecKey, type KclPayloadCodecOptions } from './codec/payload-codec';
export { createCodecServer, type CodecServerOptions } from './codec/codec-server';
// Connecting to Temporal (profiles, TLS, API keys), with actionable errors
export {
  resolveTemporalConnection,
  type TemporalConnectionFlags,
  type TemporalConnectionSettings,
} from './config/temporal-connection';
export { connectClient, connectWorker, nativeConnectionOptions } from './client/connection';
// The lease table's item, as status reports it (the table class itself is internal)
export type { Lease } from './checkpoint/lease-item';
// The local stack is not exported here: import it from 'temporal-kcl/dev' (it needs the development dependencies).

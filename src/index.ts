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
export * from './options';
export * from './consumer-types';
export * from './search-attributes';
export { FailureType } from './failure-types';
export * from './errors';
// Payload codec
export { KclPayloadCodec, parseCodecKey, type KclPayloadCodecOptions } from './codec/payload-codec';
export { createCodecServer, type CodecServerOptions } from './codec/codec-server';
// The lease table
export { CheckpointTable, type Lease } from './checkpoint/checkpoint-table';
// Local stack
export { startDevStack, type DevStack, type DevStackOptions } from './dev/dev-stack';

// Workflow entry point (the worker's workflowsPath). Deterministic code only.
export { shardConsumerWorkflow } from './shard-consumer';
export { streamConsumerWorkflow } from './stream-consumer';

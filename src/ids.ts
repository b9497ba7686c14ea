/**
 * Workflow ids, task-queue names and lease owners: built in one place so the CLI, the client helpers, the stream
 * workflow and the tests agree. Pure module: workflows import it.
 */

/** Task queue of temporal-kcl workflows and of the activities any worker may run. */
export const DEFAULT_TASK_QUEUE = 'temporal-kcl';

/** Id of the workflow that consumes a whole stream: one per application and stream. */
export function streamConsumerWorkflowId(applicationName: string, streamName: string): string {
  return `temporal-kcl/${applicationName}/${streamName}`;
}

/** Id of the workflow that consumes one shard: one per application, stream and shard, so a second one is rejected. */
export function shardConsumerWorkflowId(applicationName: string, streamName: string, shardId: string): string {
  return `${streamConsumerWorkflowId(applicationName, streamName)}/${shardId}`;
}

/** The lease table of an application (KCL's default: the application name). */
export function defaultTableName(applicationName: string): string {
  return applicationName;
}

/** Why `tableName` cannot name a DynamoDB lease table, or undefined if it can. */
export function leaseTableNameProblem(tableName: string): string | undefined {
  return /^[A-Za-z0-9_.-]{3,255}$/.test(tableName)
    ? undefined
    : `lease table name must be 3-255 characters of A-Z, a-z, 0-9, '_', '-', '.', got '${tableName}' (it defaults to the application name)`;
}

/** The lease owner a shard consumer writes into the lease table: stable for the whole continue-as-new chain. */
export function leaseOwner(workflowId: string, firstRunId: string): string {
  return `${workflowId}#${firstRunId}`;
}

/** Task queue served by one worker process only: its batches and processor instances live there. */
export function workerTaskQueue(taskQueue: string, workerIdentity: string): string {
  return `${taskQueue}@${workerIdentity}`;
}

import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { CheckpointTable, type LiveOwnerGuard } from '../checkpoint/checkpoint-table';

/** How long a failed table check is shared before the next call asks DynamoDB again. */
const FAILED_CHECK_KEPT_MS = 1_000;

/**
 * Lease tables by name (and, for a multi-stream table, by stream identifier), each ensured (created on demand, schema
 * checked) once per worker; a failed check is retried next time.
 */
export function leaseTables(
  dynamoDb: DynamoDBClient,
  liveOwnerGuard?: LiveOwnerGuard,
): (tableName: string, streamIdentifier?: string) => Promise<CheckpointTable> {
  const tables = new Map<string, Promise<CheckpointTable>>();
  return (tableName, streamIdentifier) => {
    const cacheKey = JSON.stringify([tableName, streamIdentifier ?? null]);
    let ready = tables.get(cacheKey);
    if (!ready) {
      const table = new CheckpointTable({
        dynamoDb,
        tableName,
        ...(streamIdentifier !== undefined ? { streamIdentifier } : {}),
        ...(liveOwnerGuard ? { liveOwnerGuard } : {}),
      });
      ready = table.ensureTable().then(() => table);
      tables.set(cacheKey, ready);
      // A failed check is shared for a second by the calls that come meanwhile (concurrent pins of a new worker), so the
      // table is not asked again at once: each activity retries by its policy.
      ready.catch(() => setTimeout(() => tables.delete(cacheKey), FAILED_CHECK_KEPT_MS).unref());
    }
    return ready;
  };
}

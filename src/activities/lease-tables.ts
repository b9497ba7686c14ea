import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { CheckpointTable, type LiveOwnerGuard } from '../checkpoint/checkpoint-table';

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
      ready.catch(() => tables.delete(cacheKey));
    }
    return ready;
  };
}

import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { CheckpointTable, type LiveOwnerGuard } from '../checkpoint/checkpoint-table';

/** Lease tables by name, each ensured (created on demand, schema checked) once per worker; a failed check is retried next time. */
export function leaseTables(
  dynamoDb: DynamoDBClient,
  liveOwnerGuard?: LiveOwnerGuard,
): (tableName: string) => Promise<CheckpointTable> {
  const tables = new Map<string, Promise<CheckpointTable>>();
  return (tableName) => {
    let ready = tables.get(tableName);
    if (!ready) {
      const table = new CheckpointTable({ dynamoDb, tableName, ...(liveOwnerGuard ? { liveOwnerGuard } : {}) });
      ready = table.ensureTable().then(() => table);
      tables.set(tableName, ready);
      ready.catch(() => tables.delete(tableName));
    }
    return ready;
  };
}

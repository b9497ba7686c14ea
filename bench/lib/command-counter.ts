/**
 * Counts the commands an AWS SDK client sends, by command name (e.g. `GetRecordsCommand`, `UpdateItemCommand`); each
 * attempt counts, retries included.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { KinesisClient } from '@aws-sdk/client-kinesis';

export function countCommands<T extends KinesisClient | DynamoDBClient>(client: T, counts: Record<string, number>): T {
  (client as KinesisClient).middlewareStack.add(
    (next, context) => async (args) => {
      const name = context.commandName ?? 'unknown';
      counts[name] = (counts[name] ?? 0) + 1;
      return next(args);
    },
    { step: 'initialize', name: 'benchCommandCounter' },
  );
  return client;
}

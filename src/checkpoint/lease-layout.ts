/**
 * Which layout a lease table has, and whether a stream may use it.
 *
 * - Single-stream (Java KCL's default, temporal-kcl's default): lease key = shard id. One table serves one stream.
 * - Multi-stream (Java KCL's `MultiStreamTracker`, temporal-kcl's `multiStream: true`): lease key =
 *   `<account>:<stream>:<creation epoch>:<shard id>`, with `streamName` (the stream identifier, so named in Java KCL
 *   "for legacy reasons") and `shardId` attributes. One table serves many streams.
 *
 * The two layouts never mix in one table, and a single-stream table never serves a second stream.
 */
import { type DynamoDBClient, ScanCommand } from '@aws-sdk/client-dynamodb';
import { DescribeStreamSummaryCommand, type KinesisClient } from '@aws-sdk/client-kinesis';
import { InvalidConfigError } from '../errors';
import { A, type Item } from './lease-item';

/** Java KCL's `StreamIdentifier.serialize()` in multi-stream mode: `<account>:<stream>:<creation epoch seconds>`. */
export function streamIdentifier(accountId: string, streamName: string, creationEpochSeconds: number): string {
  return `${accountId}:${streamName}:${creationEpochSeconds}`;
}

/** The account of a stream ARN (`arn:aws:kinesis:<region>:<account>:stream/<name>`). */
export function accountOfStreamArn(arn: string): string {
  const match = /^arn:aws[^:]*:kinesis:[-a-z0-9]+:(\d{12}):stream\/.+$/.exec(arn);
  if (!match?.[1]) throw new InvalidConfigError(`cannot read the account id from the stream ARN '${arn}'`);
  return match[1];
}

/** The stream's identifier for a multi-stream table, from DescribeStreamSummary (account from the ARN, no STS). */
export async function describeStreamIdentifier(kinesis: KinesisClient, streamName: string): Promise<string> {
  const { StreamDescriptionSummary: summary } = await kinesis.send(
    new DescribeStreamSummaryCommand({ StreamName: streamName }),
  );
  if (!summary?.StreamARN || !summary.StreamCreationTimestamp) {
    throw new InvalidConfigError(`DescribeStreamSummary of ${streamName} returned no ARN or creation time`);
  }
  const epoch = Math.floor(summary.StreamCreationTimestamp.getTime() / 1000);
  return streamIdentifier(accountOfStreamArn(summary.StreamARN), streamName, epoch);
}

/** What a lease table holds, by layout. */
export interface TableLayout {
  /** Items with a bare shard id as key (no `streamName`). */
  singleStreamItems: number;
  /** Streams (identifiers) with multi-stream items, and how many each. */
  multiStreams: Map<string, number>;
  /** The temporal-kcl consumers (application, stream) that own single-stream leases now. */
  singleStreamOwners: { applicationName: string; streamName: string }[];
}

/**
 * A temporal-kcl lease owner (`temporal-kcl/<app>/<stream>/<shard>#<first run id>`, see ids.ts) read back; undefined
 * for any other owner (a Java KCL worker, say).
 */
export function temporalKclOwner(owner: string): { applicationName: string; streamName: string } | undefined {
  const workflowId = owner.split('#')[0] ?? '';
  const parts = workflowId.split('/');
  if (parts[0] !== 'temporal-kcl' || parts.length < 4) return undefined;
  return { applicationName: parts.slice(1, -2).join('/'), streamName: parts.at(-2) ?? '' };
}

/** Scans the table (keys, `streamName` and owners only). A missing table is empty. */
export async function readTableLayout(dynamoDb: DynamoDBClient, tableName: string): Promise<TableLayout> {
  const layout: TableLayout = { singleStreamItems: 0, multiStreams: new Map(), singleStreamOwners: [] };
  const owners = new Map<string, { applicationName: string; streamName: string }>();
  let exclusiveStartKey: Item | undefined;
  do {
    let page;
    try {
      page = await dynamoDb.send(
        new ScanCommand({
          TableName: tableName,
          ConsistentRead: true,
          ProjectionExpression: '#key, #stream, #owner',
          ExpressionAttributeNames: { '#key': A.leaseKey, '#stream': A.streamName, '#owner': A.leaseOwner },
          ExclusiveStartKey: exclusiveStartKey,
        }),
      );
    } catch (error) {
      if (error instanceof Error && error.name === 'ResourceNotFoundException') return layout;
      throw error;
    }
    for (const item of page.Items ?? []) {
      const stream = item[A.streamName]?.S;
      if (stream !== undefined) {
        layout.multiStreams.set(stream, (layout.multiStreams.get(stream) ?? 0) + 1);
        continue;
      }
      layout.singleStreamItems++;
      const owner = item[A.leaseOwner]?.S;
      const consumer = owner === undefined ? undefined : temporalKclOwner(owner);
      if (consumer) owners.set(`${consumer.applicationName}/${consumer.streamName}`, consumer);
    }
    exclusiveStartKey = page.LastEvaluatedKey;
  } while (exclusiveStartKey);
  layout.singleStreamOwners = [...owners.values()];
  return layout;
}

/**
 * Why this stream consumer must not use the table as it stands (undefined if it may): mixing the layouts, or a second
 * stream (or application) on a single-stream table whose leases another temporal-kcl consumer holds.
 */
export function leaseLayoutProblem(
  layout: TableLayout,
  request: { tableName: string; applicationName: string; streamName: string; multiStream: boolean },
): string | undefined {
  const { tableName, applicationName, streamName } = request;
  if (request.multiStream) {
    if (layout.singleStreamItems === 0) return undefined;
    return (
      `lease table ${tableName} holds ${layout.singleStreamItems} single-stream lease(s) (lease key = shard id); a ` +
      `multi-stream consumer cannot share it, the two layouts never mix in one table. Give the multi-stream consumers ` +
      `a table of their own (--table), or start ${streamName} without --multi-stream if it is the stream those leases belong to`
    );
  }
  if (layout.multiStreams.size > 0) {
    const streams = [...layout.multiStreams.keys()].map((id) => id.split(':')[1] ?? id).join(', ');
    return (
      `lease table ${tableName} holds multi-stream leases (of ${streams}); start ${streamName} with --multi-stream ` +
      `(multiStream: true) to share it, or give it a table of its own (--table)`
    );
  }
  const others = layout.singleStreamOwners.filter(
    (owner) => owner.streamName !== streamName || owner.applicationName !== applicationName,
  );
  const other = others[0];
  if (!other) return undefined;
  return (
    `lease table ${tableName} is a single-stream table whose leases are held by the consumer of stream ` +
    `${other.streamName} (application ${other.applicationName}); two streams (or applications) cannot share one: their ` +
    `shard ids collide. Give ${streamName} a table of its own (--table), or run every stream of the application with ` +
    `--multi-stream on a table that holds no single-stream leases`
  );
}

/**
 * Checks that the stream may use the table in the layout asked for, and returns the stream identifier of a multi-stream
 * table (undefined for a single-stream one).
 *
 * @throws {@link InvalidConfigError} naming the conflict.
 */
export async function prepareLeaseLayout(
  clients: { kinesis: KinesisClient; dynamoDb: DynamoDBClient },
  request: { tableName: string; applicationName: string; streamName: string; multiStream: boolean },
): Promise<string | undefined> {
  const problem = leaseLayoutProblem(await readTableLayout(clients.dynamoDb, request.tableName), request);
  if (problem) throw new InvalidConfigError(problem);
  return request.multiStream ? describeStreamIdentifier(clients.kinesis, request.streamName) : undefined;
}

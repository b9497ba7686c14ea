/**
 * Bad and extreme input on the real local stack: records at Kinesis's limits arrive byte-exact, corrupt aggregates are
 * skipped and reported, invalid options are refused before anything starts, and a lease table with the wrong key
 * schema is reported and left as it was.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import {
  type AttributeValue,
  CreateTableCommand,
  DescribeTableCommand,
  PutItemCommand,
  ScanCommand,
  waitUntilTableExists,
} from '@aws-sdk/client-dynamodb';
import { type WorkflowHandle, WorkflowFailedError } from '@temporalio/client';
import { ActivityFailure, ApplicationFailure, WorkflowNotFoundError } from '@temporalio/common';
import { startStreamConsumer, type StartStreamConsumerOptions } from '../../src/client/consumers';
import { streamConsumerWorkflowId } from '../../src/ids';
import { shardConsumerWorkflow, stopSignal } from '../../src/workflows/shard-consumer';
import { streamConsumerWorkflow } from '../../src/workflows/stream-consumer';
import {
  createStream,
  firstShardId,
  kclTestContextForSuite,
  putRecords,
  recordingProcessor,
  startShardConsumer,
  testWorker,
  progressWhen,
} from '../helpers/kcl';
import { aggregate, corruptAggregate } from '../helpers/records';
import { uniqueName } from '../helpers/stack';

const MiB = 1024 * 1024;

describe('bad and extreme input on the real local stack', () => {
  const context = kclTestContextForSuite();

  /** The failure a workflow ended with, and whether its history scheduled any activity or child workflow. */
  async function failureOf(handle: WorkflowHandle): Promise<{ failure: unknown; startedAnything: boolean }> {
    const failure = await handle.result().then(
      () => assert.fail('the workflow should have failed'),
      (error: unknown) => (error instanceof WorkflowFailedError ? error.cause : error),
    );
    const { events } = await handle.fetchHistory();
    const startedAnything = (events ?? []).some(
      (event) =>
        event.activityTaskScheduledEventAttributes || event.startChildWorkflowExecutionInitiatedEventAttributes,
    );
    return { failure, startedAnything };
  }

  async function tableExists(tableName: string): Promise<boolean> {
    try {
      await context.dynamoDb.send(new DescribeTableCommand({ TableName: tableName }));
      return true;
    } catch (error) {
      if ((error as Error).name === 'ResourceNotFoundException') return false;
      throw error;
    }
  }

  test('records at the limits arrive byte-exact; corrupt aggregates are skipped and reported', async () => {
    // Prepare: every kind of odd record, in one shard, with corrupt aggregates among them.
    const streamName = await createStream(context.kinesis, 1, 'bad-input');
    const shardId = await firstShardId(context.kinesis, streamName);
    const applicationName = uniqueName('app');
    const taskQueue = uniqueName('tq');
    const longKey = 'k'.repeat(256);
    const longUnicodeKey = 'é'.repeat(256); // 256 characters, 512 bytes of UTF-8
    const notUtf8 = Buffer.from([0xff, 0xfe, 0x00, 0xc3, 0x28, 0xed, 0xa0, 0x80, 0xf8, 0x88, 0x80, 0x80, 0x80, 0x80]);
    assert.throws(() => new TextDecoder('utf-8', { fatal: true }).decode(notUtf8), 'the bytes are not UTF-8');
    type Expected = { partitionKey: string; data: Buffer; subSequenceNumber?: number };
    const expected: Expected[] = [];
    const corrupt: string[] = [];
    const plain = async (partitionKey: string, data: Buffer) => {
      await putRecords(context.kinesis, streamName, [{ partitionKey, data }]);
      expected.push({ partitionKey, data });
    };
    const aggregated = async (users: { partitionKey: string; data: Buffer }[]) => {
      await putRecords(context.kinesis, streamName, [aggregate(users)]);
      expected.push(...users.map((user, i) => ({ ...user, subSequenceNumber: i })));
    };
    const broken = async (kind: 'checksum' | 'truncated' | 'garbage') => {
      const [put] = await putRecords(context.kinesis, streamName, [
        { partitionKey: `corrupt-${kind}`, data: corruptAggregate(kind) },
      ]);
      corrupt.push(put?.sequenceNumber ?? '');
    };

    await plain('big-1', randomBytes(MiB)); // 1 MiB of data: the emulator's maximum
    await plain('empty', Buffer.alloc(0)); // empty data: PutRecord accepts it
    await broken('checksum');
    await plain('binary', notUtf8);
    await plain(longKey, Buffer.from('a 256-character partition key'));
    await plain(longUnicodeKey, Buffer.from('a 256-character non-ASCII partition key'));
    await broken('truncated');
    await aggregated([
      { partitionKey: 'agg-empty', data: Buffer.alloc(0) }, // an empty user record inside an aggregate
      { partitionKey: 'agg-binary', data: notUtf8 },
      { partitionKey: longKey, data: Buffer.from('user record with a 256-character key') },
      { partitionKey: 'agg-last', data: Buffer.from('last user record') },
    ]);
    await plain('big-2', randomBytes(MiB - 'big-2'.length)); // data + key = 1 MiB: what real Kinesis accepts
    await broken('garbage');
    await plain('after', Buffer.from('after everything'));

    const { factory, recording } = recordingProcessor();
    const worker = await testWorker(context, { processors: { recorder: factory }, taskQueue });

    // Act
    const started = Date.now();
    const { progress, result } = await worker.runUntil(
      (async () => {
        const handle = await startShardConsumer(context, {
          taskQueue,
          applicationName,
          streamName,
          shardId,
          processor: 'recorder',
          options: { initialPosition: 'TRIM_HORIZON', maxRecords: 4, idleTimeBetweenReadsMs: 200 },
        });
        await recording.until((r) => r.records.some((record) => record.partitionKey === 'after'));
        const afterSequenceNumber = recording.records.find((r) => r.partitionKey === 'after')?.sequenceNumber;
        const progress = await progressWhen(handle, (p) => p.lastProcessed?.sequenceNumber === afterSequenceNumber);
        await handle.signal(stopSignal);
        return { progress, result: await handle.result() };
      })(),
    );

    // Assess: byte-exact, in order, partition keys and sub-sequence numbers intact.
    const totalBytes = expected.reduce((sum, e) => sum + e.data.byteLength, 0);
    console.log(
      `delivered ${recording.records.length}/${expected.length} user records, ${totalBytes} bytes ` +
        `(2 at ~1 MiB, 2 empty, 2 non-UTF-8, 3 with 256-character keys) in ${Date.now() - started} ms; ` +
        `${progress.counters.deaggregationFailures} corrupt aggregates skipped`,
    );
    assert.deepEqual(
      recording.records.map((r) => `${r.partitionKey.slice(0, 12)}/${r.subSequenceNumber ?? '-'}`),
      expected.map((e) => `${e.partitionKey.slice(0, 12)}/${e.subSequenceNumber ?? '-'}`),
      `delivered in order, each once (counters ${JSON.stringify(progress.counters)})`,
    );
    recording.records.forEach((record, i) => {
      const want = expected[i];
      assert.equal(record.partitionKey, want?.partitionKey, `partition key of record ${i}`);
      assert.equal(record.subSequenceNumber, want?.subSequenceNumber, `sub-sequence number of record ${i}`);
      assert.ok(Buffer.from(record.data).equals(want?.data ?? Buffer.alloc(1)), `data of record ${i} byte-exact`);
    });
    assert.equal(progress.counters.recordsProcessed, expected.length);
    assert.equal(progress.counters.bytesProcessed, totalBytes);
    assert.equal(progress.counters.deaggregationFailures, 3);
    assert.deepEqual(
      progress.recentDeaggregationFailures.map((f) => f.sequenceNumber),
      corrupt,
    );
    assert.ok(
      recording.records.every((r) => !Buffer.from(r.data).toString().includes('damaged aggregate')),
      'nothing of a corrupt aggregate was delivered',
    );
    assert.equal(result.reason, 'REQUESTED');
  });

  test('invalid options to the shard consumer workflow: InvalidConfig naming the option, nothing started', async () => {
    // Prepare
    const taskQueue = uniqueName('tq');
    const { factory, recording } = recordingProcessor();
    const worker = await testWorker(context, { processors: { recorder: factory }, taskQueue });
    const cases: { options: Record<string, unknown>; tableName?: string; names: RegExp }[] = [
      { options: { maxRecords: 0 }, names: /maxRecords must be between 1 and 10000/ },
      { options: { maxRecord: 100 }, names: /unknown option\(s\): maxRecord\b/ },
      { options: { idleTimeBetweenReadsMs: -1 }, names: /idleTimeBetweenReadsMs must be at least 0 ms/ },
      { options: { heartbeatTimeoutMs: 1500.5 }, names: /heartbeatTimeoutMs must be a whole number/ },
      {
        options: { initialPosition: 'EARLIEST' },
        names: /initialPosition must be LATEST, TRIM_HORIZON or AT_TIMESTAMP/,
      },
      { options: { initialPosition: 'AT_TIMESTAMP' }, names: /initialPositionTimestamp/ },
      { options: { maxBatchesPerRun: 0 }, names: /maxBatchesPerRun must be at least 1/ },
      { options: { processingRetry: { maximumAttempts: -1 } }, names: /processingRetry\.maximumAttempts/ },
      {
        options: { processingRetry: { initialIntervalMs: 5_000, maximumIntervalMs: 1_000 } },
        names: /processingRetry\.maximumIntervalMs must not be below initialIntervalMs/,
      },
      { options: { onProcessingFailure: 'SKIP' }, names: /onProcessingFailure must be HALT or DEAD_LETTER/ },
      {
        options: { onProcessingFailure: 'DEAD_LETTER', processingRetry: { maximumAttempts: 3 } },
        names: /onProcessingFailure DEAD_LETTER needs a deadLetter destination/,
      },
      {
        options: { onProcessingFailure: 'DEAD_LETTER', deadLetter: { type: 'CALLBACK', name: 'x' } },
        names: /processingRetry\.maximumAttempts > 0/,
      },
      { options: { deadLetter: { type: 'S3', bucket: 'b' } }, names: /deadLetter must be/ },
      { options: { deadLetter: { type: 'DYNAMODB', tableName: 'x' } }, names: /deadLetter\.tableName/ },
      { options: { deadLetterGranularity: 'ROW' }, names: /deadLetterGranularity/ },
      { options: {}, tableName: 'x', names: /lease table name/ },
    ];
    const applicationName = uniqueName('app');

    // Act
    const outcomes = await worker.runUntil(
      Promise.all(
        cases.map(async ({ options, tableName }, i) =>
          failureOf(
            await context.client.workflow.start(shardConsumerWorkflow, {
              taskQueue,
              workflowId: uniqueName(`invalid-${i}`),
              args: [
                {
                  applicationName,
                  streamName: 'no-stream',
                  shardId: 'shardId-000000000000',
                  processor: 'recorder',
                  options,
                  ...(tableName ? { tableName } : {}),
                },
              ],
            }),
          ),
        ),
      ),
    );

    // Assess
    outcomes.forEach(({ failure, startedAnything }, i) => {
      const { options, names } = cases[i]!;
      assert.ok(failure instanceof ApplicationFailure, `${JSON.stringify(options)}: ${String(failure)}`);
      assert.equal(failure.type, 'InvalidConfig');
      assert.equal(failure.nonRetryable, true);
      assert.match(failure.message, names, JSON.stringify(options));
      assert.equal(startedAnything, false, `${JSON.stringify(options)} started an activity`);
    });
    console.log(`${outcomes.length} invalid option sets refused, e.g. "${(outcomes[1]?.failure as Error).message}"`);
    assert.equal(recording.events.length, 0, 'no processor was created');
    assert.equal(await tableExists(applicationName), false, 'no lease table was created');
  });

  test('invalid options to startStreamConsumer and to the stream consumer workflow: InvalidConfig, nothing started', async () => {
    // Prepare
    const taskQueue = uniqueName('tq');
    const streamName = uniqueName('stream');
    const cases: { options: Partial<StartStreamConsumerOptions>; names: RegExp }[] = [
      { options: { shardOptions: { maxRecords: 20_000 } }, names: /maxRecords must be between 1 and 10000/ },
      {
        options: { shardOptions: { onProcessingFailure: 'DEAD_LETTER' } },
        names: /onProcessingFailure DEAD_LETTER needs a deadLetter destination/,
      },
      { options: { shardOptions: { typo: true } as never }, names: /unknown option\(s\): typo/ },
      { options: { shardSyncIntervalMs: 5 }, names: /shardSyncIntervalMs/ },
      { options: { applicationName: ' ' }, names: /application name must be a non-empty string/ },
      { options: { streamName: 'no spaces allowed' }, names: /not a valid Kinesis stream name/ },
      { options: { tableName: 'x' }, names: /lease table name/ },
      { options: { applicationName: 'my app/v2' }, names: /lease table name/ },
    ];

    // Act + assess: the client helper refuses before starting anything.
    for (const { options, names } of cases) {
      const applicationName = options.applicationName ?? uniqueName('app');
      const start = {
        applicationName,
        streamName,
        processor: 'recorder',
        taskQueue,
        searchAttributes: false,
        ...options,
      };
      await assert.rejects(
        startStreamConsumer(context.client, start),
        (error: Error) => {
          assert.equal(error.name, 'InvalidConfig', `${JSON.stringify(options)}: ${error.message}`);
          assert.match(error.message, names);
          return true;
        },
        JSON.stringify(options),
      );
      await assert.rejects(
        context.client.workflow.getHandle(streamConsumerWorkflowId(start.applicationName, start.streamName)).describe(),
        WorkflowNotFoundError,
        `${JSON.stringify(options)}: no stream consumer was started`,
      );
    }

    // The workflow itself (started with the plain client) checks the same and starts no shard consumer.
    const { factory, recording } = recordingProcessor();
    const worker = await testWorker(context, { processors: { recorder: factory }, taskQueue });
    const inputs = [
      { shardOptions: { maxRecords: 0, processingRetry: { maximumAttempts: 'three' as never } } },
      { tableName: 'x' },
    ];
    const direct = await worker.runUntil(
      Promise.all(
        inputs.map(async (input) =>
          failureOf(
            await context.client.workflow.start(streamConsumerWorkflow, {
              taskQueue,
              workflowId: uniqueName('invalid-stream'),
              args: [{ applicationName: uniqueName('app'), streamName, processor: 'recorder', ...input }],
            }),
          ),
        ),
      ),
    );
    console.log(
      `${cases.length} startStreamConsumer calls refused; workflow: ${direct.map((d) => `"${(d.failure as Error).message}"`).join(', ')}`,
    );
    for (const { failure, startedAnything } of direct) {
      assert.ok(failure instanceof ApplicationFailure);
      assert.equal(failure.type, 'InvalidConfig');
      assert.equal(startedAnything, false);
    }
    assert.match((direct[0]?.failure as Error).message, /maxRecords must be between 1 and 10000/);
    assert.match((direct[0]?.failure as Error).message, /processingRetry\.maximumAttempts/);
    assert.match((direct[1]?.failure as Error).message, /lease table name .* got 'x'/);
    assert.equal(recording.events.length, 0);
  });

  test('a lease table with the wrong key schema: LeaseTableSchema failure, table and item untouched', async () => {
    // Prepare: two tables that are not KCL lease tables (leaseKey of type N; another key name), each with one item.
    const streamName = await createStream(context.kinesis, 1, 'bad-table');
    const shardId = await firstShardId(context.kinesis, streamName);
    await putRecords(context.kinesis, streamName, [{ partitionKey: 'pk', data: 'never delivered' }]);
    const tables: {
      tableName: string;
      key: { AttributeName: string; AttributeType: 'S' | 'N' };
      item: Record<string, AttributeValue>;
      found: RegExp;
    }[] = [
      {
        tableName: uniqueName('wrong-type'),
        key: { AttributeName: 'leaseKey', AttributeType: 'N' },
        item: { leaseKey: { N: '42' }, leaseOwner: { S: 'someone' }, checkpoint: { S: 'TRIM_HORIZON' } },
        found: /leaseKey \(HASH, N\)/,
      },
      {
        tableName: uniqueName('wrong-name'),
        key: { AttributeName: 'shardId', AttributeType: 'S' },
        item: { shardId: { S: shardId }, owner: { S: 'someone else' } },
        found: /shardId \(HASH, S\)/,
      },
    ];
    for (const { tableName, key, item } of tables) {
      await context.dynamoDb.send(
        new CreateTableCommand({
          TableName: tableName,
          AttributeDefinitions: [key],
          KeySchema: [{ AttributeName: key.AttributeName, KeyType: 'HASH' }],
          BillingMode: 'PAY_PER_REQUEST',
        }),
      );
      await waitUntilTableExists({ client: context.dynamoDb, maxWaitTime: 30, minDelay: 1 }, { TableName: tableName });
      await context.dynamoDb.send(new PutItemCommand({ TableName: tableName, Item: item }));
    }
    const schemaBefore = await Promise.all(
      tables.map(async ({ tableName }) => {
        const { Table } = await context.dynamoDb.send(new DescribeTableCommand({ TableName: tableName }));
        return { KeySchema: Table?.KeySchema, AttributeDefinitions: Table?.AttributeDefinitions };
      }),
    );
    const taskQueue = uniqueName('tq');
    const { factory, recording } = recordingProcessor();
    const worker = await testWorker(context, { processors: { recorder: factory }, taskQueue });

    // Act
    const outcomes = await worker.runUntil(
      Promise.all(
        tables.map(async ({ tableName }) =>
          failureOf(
            await context.client.workflow.start(shardConsumerWorkflow, {
              taskQueue,
              workflowId: uniqueName('wrong-schema'),
              args: [
                {
                  applicationName: uniqueName('app'),
                  tableName,
                  streamName,
                  shardId,
                  processor: 'recorder',
                  options: { initialPosition: 'TRIM_HORIZON' },
                },
              ],
            }),
          ),
        ),
      ),
    );

    // Assess
    for (const [i, { failure }] of outcomes.entries()) {
      const { tableName, item, found } = tables[i]!;
      assert.ok(failure instanceof ActivityFailure, String(failure));
      const cause = failure.cause;
      assert.ok(cause instanceof ApplicationFailure, String(cause));
      assert.equal(cause.type, 'LeaseTableSchema');
      assert.equal(cause.nonRetryable, true);
      assert.match(cause.message, new RegExp(`lease table ${tableName}: found key schema`));
      assert.match(cause.message, found);
      assert.match(cause.message, /needs exactly one key: leaseKey \(HASH, S\)/);
      console.log(`wrong schema: "${cause.message}"`);
      const { Table } = await context.dynamoDb.send(new DescribeTableCommand({ TableName: tableName }));
      assert.deepEqual(
        { KeySchema: Table?.KeySchema, AttributeDefinitions: Table?.AttributeDefinitions },
        schemaBefore[i],
      );
      const { Items } = await context.dynamoDb.send(new ScanCommand({ TableName: tableName, ConsistentRead: true }));
      assert.deepEqual(Items, [item]);
    }
    assert.equal(recording.events.length, 0, 'no processor was created');
  });
});

/**
 * The baseline the benchmark compares temporal-kcl with: a plain AWS-SDK loop, GetShardIterator(TRIM_HORIZON) then
 * GetRecords → deaggregateRecords (and, if asked, the hash-key range check temporal-kcl makes) until every record is read, with the same Kinesis client temporal-kcl's worker uses
 * (createKinesisClient) and the same de-aggregation. It runs in a process of its own, as the worker does, so both read
 * the in-process emulator of the benchmark from another process.
 *
 * Usage (the benchmark does this): node --import tsx bench/raw-reader-process.ts '<StackEndpoints as JSON>'
 */
import { GetRecordsCommand, GetShardIteratorCommand } from '@aws-sdk/client-kinesis';
import { createKinesisClient, EMULATOR_CREDENTIALS } from '../src/aws/clients';
import { deaggregateRecords } from '../src/kinesis/deaggregate';
import { hashKeyRangeFilter } from '../src/kinesis/hash-key';
import type { RawReaderMessage, RawReadRequest, RawReadResult, StackEndpoints } from './lib/protocol';

function send(message: RawReaderMessage): void {
  process.send?.(message);
}

async function main(): Promise<void> {
  const raw = process.argv[2];
  if (!raw) throw new Error('usage: raw-reader-process.ts <endpoints as JSON>');
  const endpoints = JSON.parse(raw) as StackEndpoints;
  const kinesis = createKinesisClient({
    region: 'us-east-1',
    kinesisEndpoint: endpoints.kinesisEndpoint,
    credentials: EMULATOR_CREDENTIALS,
    maxAttempts: 1,
  });

  async function read(request: RawReadRequest): Promise<RawReadResult> {
    const cpu = process.cpuUsage();
    const started = Date.now();
    let iterator = (
      await kinesis.send(
        new GetShardIteratorCommand({
          StreamName: request.streamName,
          ShardId: request.shardId,
          ShardIteratorType: 'TRIM_HORIZON',
        }),
      )
    ).ShardIterator;
    let records = 0;
    let bytes = 0;
    let calls = 0;
    let firstBatchMs = 0;
    let firstBatchRecords = 0;
    while (records < request.expectedRecords) {
      if (!iterator) throw new Error(`shard ended after ${records} of ${request.expectedRecords} records`);
      const response = await kinesis.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: request.limit }));
      calls++;
      const batch = await deaggregateRecords(response.Records ?? []);
      if (batch.failures.length > 0) throw new Error(`de-aggregation failed: ${batch.failures[0]?.error}`);
      const inRange = request.hashKeyRange ? hashKeyRangeFilter(request.hashKeyRange) : undefined;
      for (const record of batch.records) {
        if (inRange && record.subSequenceNumber !== undefined && !inRange(record)) continue;
        bytes += record.data.byteLength;
        records++;
      }
      if (firstBatchRecords === 0 && records > 0) {
        firstBatchMs = Date.now() - started;
        firstBatchRecords = records;
      }
      iterator = response.NextShardIterator;
      if (calls > 100_000) throw new Error('no progress');
    }
    const elapsedMs = Date.now() - started;
    const used = process.cpuUsage(cpu);
    return {
      type: 'read',
      requestId: request.requestId,
      elapsedMs,
      firstBatchMs,
      firstBatchRecords,
      records,
      bytes,
      getRecordsCalls: calls,
      cpuMs: (used.user + used.system) / 1000,
    };
  }

  process.once('disconnect', () => process.exit(0));
  process.on('message', (request: RawReadRequest) => {
    read(request).then(send, (error: unknown) =>
      send({
        type: 'read',
        requestId: request.requestId,
        elapsedMs: 0,
        firstBatchMs: 0,
        firstBatchRecords: 0,
        records: 0,
        bytes: 0,
        getRecordsCalls: 0,
        cpuMs: 0,
        error: error instanceof Error ? error.message : String(error),
      }),
    );
  });
  send({ type: 'ready' });
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});

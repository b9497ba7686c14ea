/**
 * Streams for the benchmark: creating and deleting them, pre-filling them with records of a given size or with KPL
 * aggregates, and producing at a steady rate. Every record's data starts with its put time (13 ASCII digits, epoch ms),
 * which the worker's `lag` processor reads.
 */
import {
  CreateStreamCommand,
  DeleteStreamCommand,
  type KinesisClient,
  ListShardsCommand,
  PutRecordsCommand,
  type PutRecordsRequestEntry,
  waitUntilStreamExists,
} from '@aws-sdk/client-kinesis';
import type { HashKeyRange } from '../../src/consumer-types';
import { aggregate } from '../../src/kinesis/aggregate';
import { inHashKeyRange } from '../../src/kinesis/hash-key';

export interface BenchShard {
  shardId: string;
  hashKeyRange: HashKeyRange;
}

let streams = 0;

/** A name no other stream, table or workflow of this run uses. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid.toString(36)}-${Date.now().toString(36)}-${(++streams).toString(36)}`;
}

/** Creates a stream, waits until it is ACTIVE, and returns its name and shards. */
export async function createStream(
  kinesis: KinesisClient,
  shardCount: number,
  prefix: string,
): Promise<{ streamName: string; shards: BenchShard[] }> {
  const streamName = uniqueName(prefix);
  await kinesis.send(new CreateStreamCommand({ StreamName: streamName, ShardCount: shardCount }));
  await waitUntilStreamExists({ client: kinesis, maxWaitTime: 60, minDelay: 1 }, { StreamName: streamName });
  const listed = await kinesis.send(new ListShardsCommand({ StreamName: streamName }));
  const shards = (listed.Shards ?? []).map((shard) => ({
    shardId: shard.ShardId ?? '',
    hashKeyRange: {
      startingHashKey: shard.HashKeyRange?.StartingHashKey ?? '0',
      endingHashKey: shard.HashKeyRange?.EndingHashKey ?? '0',
    },
  }));
  if (shards.length !== shardCount) throw new Error(`stream ${streamName}: ${shards.length} shards, not ${shardCount}`);
  return { streamName, shards };
}

/** Deletes a stream (frees the emulator's memory); errors are ignored. */
export async function deleteStream(kinesis: KinesisClient, streamName: string): Promise<void> {
  await kinesis.send(new DeleteStreamCommand({ StreamName: streamName })).catch(() => undefined);
}

/** `size` bytes of data that start with the put time. */
export function timedData(size: number, at = Date.now()): Buffer {
  const data = Buffer.alloc(Math.max(size, 13), 'x');
  data.write(String(at).padStart(13, '0').slice(-13), 0, 'latin1');
  return data;
}

/** What one pre-filled case holds. */
export type Payload =
  | { kind: 'plain'; recordBytes: number }
  | {
      kind: 'kpl';
      userRecordBytes: number;
      userRecordsPerAggregate: number;
      /**
       * Put every aggregate on the lower half of the key space (shard 0 of a two-shard stream), with user records whose
       * partition keys hash there too: temporal-kcl then checks each user record's hash key (the whole key space of a
       * one-shard stream needs no check).
       */
      lowerHalf?: boolean;
    };

/** Bytes of one Kinesis record of this payload (an aggregate: its encoded size). */
export function kinesisRecordBytes(payload: Payload): number {
  if (payload.kind === 'plain') return payload.recordBytes;
  return kplAggregate(payload, 0).data.length;
}

/** The lower half of the hash key space: shard 0 of a two-shard stream. */
const LOWER_HALF: HashKeyRange = { startingHashKey: '0', endingHashKey: ((1n << 127n) - 1n).toString() };

let lowerHalfKeys: string[] | undefined;

/** Partition keys whose MD5 hash key lies in the lower half of the key space. */
function lowerHalfKey(n: number): string {
  lowerHalfKeys ??= Array.from({ length: 20_000 }, (_, i) => `pk-${i}`).filter((partitionKey) =>
    inHashKeyRange({ partitionKey }, LOWER_HALF),
  );
  return lowerHalfKeys[n % lowerHalfKeys.length]!;
}

function kplAggregate(payload: Extract<Payload, { kind: 'kpl' }>, n: number) {
  const at = Date.now();
  return aggregate(
    Array.from({ length: payload.userRecordsPerAggregate }, (_, i) => ({
      partitionKey: payload.lowerHalf ? lowerHalfKey(n * payload.userRecordsPerAggregate + i) : `pk-${n}-${i}`,
      data: timedData(payload.userRecordBytes, at),
    })),
  );
}

/** Puts entries in PutRecords calls of at most 500 records and ~4 MB, re-sending failed ones. */
export async function putAll(
  kinesis: KinesisClient,
  streamName: string,
  entries: PutRecordsRequestEntry[],
  concurrency = 2,
): Promise<void> {
  const chunks: PutRecordsRequestEntry[][] = [];
  let chunk: PutRecordsRequestEntry[] = [];
  let chunkBytes = 0;
  for (const entry of entries) {
    const bytes = (entry.Data?.length ?? 0) + (entry.PartitionKey?.length ?? 0);
    if (chunk.length === 500 || (chunk.length > 0 && chunkBytes + bytes > 4 * 1024 * 1024)) {
      chunks.push(chunk);
      chunk = [];
      chunkBytes = 0;
    }
    chunk.push(entry);
    chunkBytes += bytes;
  }
  if (chunk.length > 0) chunks.push(chunk);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < chunks.length) {
        let pending = chunks[next++]!;
        for (let attempt = 0; pending.length > 0; attempt++) {
          if (attempt >= 8)
            throw new Error(`PutRecords: ${pending.length} records still failing after ${attempt} attempts`);
          if (attempt > 0) await new Promise((r) => setTimeout(r, 50 * 2 ** attempt));
          const result = await kinesis.send(new PutRecordsCommand({ StreamName: streamName, Records: pending }));
          pending = pending.filter((_, i) => result.Records?.[i]?.ErrorCode);
        }
      }
    }),
  );
}

/**
 * Pre-fills a stream (its first shard, for a `lowerHalf` payload) with `kinesisRecords` Kinesis records of the payload; returns the number of user records
 * and their bytes.
 */
export async function prefill(
  kinesis: KinesisClient,
  streamName: string,
  payload: Payload,
  kinesisRecords: number,
): Promise<{ userRecords: number; userBytes: number }> {
  const entries: PutRecordsRequestEntry[] = [];
  if (payload.kind === 'plain') {
    const data = timedData(payload.recordBytes);
    for (let i = 0; i < kinesisRecords; i++) entries.push({ PartitionKey: `pk-${i % 1000}`, Data: data });
    await putAll(kinesis, streamName, entries);
    return { userRecords: kinesisRecords, userBytes: kinesisRecords * payload.recordBytes };
  }
  for (let i = 0; i < kinesisRecords; i++) {
    const built = kplAggregate(payload, i);
    entries.push({
      PartitionKey: built.partitionKey,
      Data: built.data,
      ...(payload.lowerHalf ? { ExplicitHashKey: '0' } : {}),
    });
  }
  await putAll(kinesis, streamName, entries);
  const userRecords = kinesisRecords * payload.userRecordsPerAggregate;
  return { userRecords, userBytes: userRecords * payload.userRecordBytes };
}

/** Partition keys whose MD5 hash key lies in the shard's range (so de-aggregation keeps their user records). */
function partitionKeysIn(shard: BenchShard, count: number): string[] {
  const keys: string[] = [];
  for (let i = 0; keys.length < count && i < 1_000_000; i++) {
    const partitionKey = `pk-${shard.shardId}-${i}`;
    if (inHashKeyRange({ partitionKey }, shard.hashKeyRange)) keys.push(partitionKey);
  }
  if (keys.length === 0) throw new Error(`no partition key found for the hash key range of ${shard.shardId}`);
  return keys;
}

/**
 * Puts `ratePerShard` (user) records per second on every shard (spread by explicit hash key), in ticks of `tickMs`,
 * until stopped. A tick that runs late is caught up by the next, so the rate holds as long as the emulator keeps up.
 * With `userRecordsPerRecord` > 1 every Kinesis record is a KPL aggregate of that many user records (partition keys that
 * hash into the shard), as a producer beyond a real shard's 1,000 Kinesis records/s would send them.
 */
export class RateProducer {
  /** User records produced. */
  produced = 0;
  startedAt = 0;
  stoppedAt = 0;
  private running = false;
  private loop: Promise<void> | undefined;
  private readonly keys: Map<string, string[]>;

  constructor(
    private readonly kinesis: KinesisClient,
    private readonly streamName: string,
    private readonly shards: BenchShard[],
    private readonly ratePerShard: number,
    private readonly recordBytes: number,
    private readonly tickMs = 100,
    private readonly userRecordsPerRecord = 1,
  ) {
    this.keys = new Map(
      userRecordsPerRecord > 1 ? shards.map((shard) => [shard.shardId, partitionKeysIn(shard, 32)]) : [],
    );
  }

  start(): void {
    this.running = true;
    this.startedAt = Date.now();
    this.loop = this.run();
  }

  /** Stops producing; resolves once the last put has been acknowledged. */
  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
    this.stoppedAt = Date.now();
  }

  /** User records per second actually produced, all shards together. */
  get achievedRate(): number {
    const end = this.stoppedAt || Date.now();
    return this.produced / Math.max(0.001, (end - this.startedAt) / 1000);
  }

  private entry(shard: BenchShard, n: number): PutRecordsRequestEntry {
    const data = timedData(this.recordBytes);
    const ExplicitHashKey = shard.hashKeyRange.startingHashKey;
    if (this.userRecordsPerRecord <= 1) return { PartitionKey: 'pk', ExplicitHashKey, Data: data };
    const keys = this.keys.get(shard.shardId)!;
    const built = aggregate(
      Array.from({ length: this.userRecordsPerRecord }, (_, i) => ({
        partitionKey: keys[(n * this.userRecordsPerRecord + i) % keys.length]!,
        data,
      })),
    );
    return { PartitionKey: built.partitionKey, ExplicitHashKey, Data: built.data };
  }

  private async run(): Promise<void> {
    // Kinesis records per second per shard.
    const rate = this.ratePerShard / Math.max(1, this.userRecordsPerRecord);
    let sentPerShard = 0;
    while (this.running) {
      const tickStarted = Date.now();
      let duePerShard = Math.floor(((tickStarted - this.startedAt) / 1000) * rate) - sentPerShard;
      // A producer that fell behind (the emulator is saturated) catches up at most three ticks' worth at a time and
      // gives the rest up, so the achieved rate shows the shortfall instead of one huge late put.
      const maxPerTick = Math.max(1, Math.ceil((3 * rate * this.tickMs) / 1000));
      if (duePerShard > maxPerTick) {
        sentPerShard += duePerShard - maxPerTick;
        duePerShard = maxPerTick;
      }
      if (duePerShard > 0) {
        const entries: PutRecordsRequestEntry[] = [];
        for (let i = 0; i < duePerShard; i++) {
          for (const shard of this.shards) entries.push(this.entry(shard, sentPerShard + i));
        }
        await putAll(this.kinesis, this.streamName, entries, 4);
        sentPerShard += duePerShard;
        this.produced += entries.length * Math.max(1, this.userRecordsPerRecord);
      }
      const wait = this.tickMs - (Date.now() - tickStarted);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  }
}

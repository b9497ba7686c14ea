/**
 * A producer for reliability tests: user records `<key>#<n>` with a counter per partition key, put as plain records and as
 * KPL aggregates (PutRecords, one entry per key per call, so a key's records reach Kinesis in counter order), until
 * stopped.
 *
 * An aggregate carries user records of one hash-key "cell" only: the cells are the stream's shard ranges cut at every
 * boundary a planned reshard will add, so an aggregate's user records stay in one shard whatever the layout when it is
 * put (a real KPL aggregates by predicted shard; a consumer drops user records outside its shard's range, as KCL does).
 */
import { type KinesisClient, PutRecordsCommand, type PutRecordsRequestEntry } from '@aws-sdk/client-kinesis';
import { aggregate } from '../../src/kinesis/aggregate';
import { hashKeyOf } from '../../src/kinesis/hash-key';

/** A deterministic pseudo-random generator (mulberry32): the same seed gives the same choices. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface KeyedProducerOptions {
  streamName: string;
  /** Hash keys where cells begin (0 is implied): every shard boundary, now and after the planned reshards. */
  cellStarts: bigint[];
  /** Partition keys per cell. @default 6 */
  keysPerCell?: number;
  random: () => number;
  /** One PutRecords call per tick. @default 100 */
  tickMs?: number;
  /** Entries per call, at most. @default 6 */
  entriesPerCall?: number;
  /** User records per aggregate, at most (at least 2). @default 6 */
  aggregateSize?: number;
}

/** What was put: every user record's data, its key and counter, and whether it went in an aggregate. */
export interface ProducedRecord {
  key: string;
  n: number;
  aggregated: boolean;
}

export class KeyedProducer {
  /** Every user record put, by data (`<key>#<n>`). */
  readonly produced = new Map<string, ProducedRecord>();
  kinesisRecords = 0;
  aggregates = 0;
  /** Entries sent again because Kinesis rejected them (throttling). */
  retriedEntries = 0;
  /** Calls sent again because the call itself failed (a retry may write twice). */
  retriedCalls = 0;
  readonly cells: string[][];
  private readonly next = new Map<string, number>();
  private running = false;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly kinesis: KinesisClient,
    private readonly options: KeyedProducerOptions,
  ) {
    const starts = [...options.cellStarts].filter((start) => start > 0n).sort((a, b) => (a < b ? -1 : 1));
    const cellOf = (key: string) => starts.filter((start) => hashKeyOf({ partitionKey: key }) >= start).length;
    const perCell = options.keysPerCell ?? 6;
    this.cells = Array.from({ length: starts.length + 1 }, () => []);
    for (let i = 0; this.cells.some((cell) => cell.length < perCell); i++) {
      const key = `pk-${i}`;
      const cell = this.cells[cellOf(key)]!;
      if (cell.length < perCell) cell.push(key);
    }
  }

  get keys(): string[] {
    return this.cells.flat();
  }

  start(): void {
    this.running = true;
    this.loop = this.run();
  }

  /** Stops after the call in progress; rejects if producing failed. */
  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  private take(key: string, aggregated: boolean): string {
    const n = this.next.get(key) ?? 0;
    this.next.set(key, n + 1);
    const data = `${key}#${n}`;
    this.produced.set(data, { key, n, aggregated });
    return data;
  }

  /** One call's entries: no key in two entries; aggregates of 2..aggregateSize user records of one cell. */
  private entries(): { entry: PutRecordsRequestEntry; aggregate: boolean }[] {
    const { random } = this.options;
    const used = new Set<string>();
    const entries: { entry: PutRecordsRequestEntry; aggregate: boolean }[] = [];
    const count = 1 + Math.floor(random() * (this.options.entriesPerCall ?? 6));
    for (let e = 0; e < count; e++) {
      const cell = this.cells[Math.floor(random() * this.cells.length)]!;
      const free = cell.filter((key) => !used.has(key));
      if (free.length === 0) continue;
      if (random() < 0.5) {
        const key = free[Math.floor(random() * free.length)]!;
        used.add(key);
        entries.push({ entry: { PartitionKey: key, Data: Buffer.from(this.take(key, false)) }, aggregate: false });
        continue;
      }
      const size = 2 + Math.floor(random() * ((this.options.aggregateSize ?? 6) - 1));
      const users = Array.from({ length: size }, () => {
        // A key may repeat inside an aggregate: its records keep their order there (sub-sequence numbers).
        const key = free[Math.floor(random() * free.length)]!;
        used.add(key);
        return { partitionKey: key, data: this.take(key, true) };
      });
      const built = aggregate(users);
      entries.push({ entry: { PartitionKey: built.partitionKey, Data: built.data }, aggregate: true });
    }
    return entries;
  }

  private async put(entries: { entry: PutRecordsRequestEntry; aggregate: boolean }[]): Promise<void> {
    let pending = entries;
    for (let attempt = 0; pending.length > 0; attempt++) {
      if (attempt >= 8) throw new Error(`producer: ${pending.length} entries still rejected after ${attempt} attempts`);
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 50 * 2 ** attempt));
      let result;
      try {
        result = await this.kinesis.send(
          new PutRecordsCommand({ StreamName: this.options.streamName, Records: pending.map((item) => item.entry) }),
        );
      } catch {
        this.retriedCalls++;
        continue;
      }
      const failed = pending.filter((_, index) => result.Records?.[index]?.ErrorCode);
      for (const item of pending) {
        if (failed.includes(item)) continue;
        this.kinesisRecords++;
        if (item.aggregate) this.aggregates++;
      }
      this.retriedEntries += failed.length;
      pending = failed;
    }
  }

  private async run(): Promise<void> {
    const tickMs = this.options.tickMs ?? 100;
    while (this.running) {
      const started = Date.now();
      await this.put(this.entries());
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, tickMs - (Date.now() - started))));
    }
  }
}

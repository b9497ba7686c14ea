import { type KinesisClient, PutRecordsCommand, type PutRecordsRequestEntry } from '@aws-sdk/client-kinesis';
import { aggregate } from '../kinesis/aggregate';
import type { DemoPayload } from './demo-processor';

export interface ProducerOptions {
  streamName: string;
  /** User records per second. @default 100 */
  rate?: number;
  /** Partition keys to spread records over. @default 32 */
  keys?: number;
  /** Every n-th put is a KPL aggregate of `aggregateSize` user records (the rest are plain records). @default 3 */
  aggregateEvery?: number;
  /** @default 10 */
  aggregateSize?: number;
}

/**
 * Writes plain and KPL-aggregated records at a steady rate, numbering each partition key's records so a consumer can
 * check completeness and order. Puts one key's records strictly in order (a key's next put waits for its previous one).
 */
export class DemoProducer {
  produced = 0;
  aggregates = 0;
  failures = 0;
  private running = false;
  private loop: Promise<void> | undefined;
  private readonly next = new Map<string, number>();

  constructor(
    private readonly kinesis: KinesisClient,
    private readonly options: ProducerOptions,
  ) {}

  start(): void {
    this.running = true;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  /** Puts the entries, re-sending failed ones with backoff; false if some still failed. */
  private async put(entries: { entry: PutRecordsRequestEntry; userRecords: number }[]): Promise<boolean> {
    let pending = entries;
    for (let attempt = 0; pending.length > 0 && attempt < 6; attempt++) {
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** attempt));
      try {
        const result = await this.kinesis.send(
          new PutRecordsCommand({ StreamName: this.options.streamName, Records: pending.map((item) => item.entry) }),
        );
        const failed = pending.filter((_, index) => result.Records?.[index]?.ErrorCode);
        for (const item of pending) if (!failed.includes(item)) this.produced += item.userRecords;
        pending = failed;
      } catch {
        // the whole call failed: try all of it again
      }
    }
    return pending.length === 0;
  }

  private payload(key: string): DemoPayload {
    const n = this.next.get(key) ?? 0;
    this.next.set(key, n + 1);
    return { key, n };
  }

  private async run(): Promise<void> {
    const rate = this.options.rate ?? 100;
    const keys = this.options.keys ?? 32;
    const every = this.options.aggregateEvery ?? 3;
    const size = this.options.aggregateSize ?? 10;
    const tickMs = 200;
    let tick = 0;
    while (this.running) {
      const started = Date.now();
      const entries: { entry: PutRecordsRequestEntry; userRecords: number }[] = [];
      let userRecords = 0;
      // One entry per key per tick at most, so a key's records never race each other inside one PutRecords call.
      const perTick = Math.max(1, Math.round((rate * tickMs) / 1000));
      for (let i = 0; userRecords < perTick && i < keys; i++) {
        const key = `key-${(tick * perTick + i) % keys}`;
        if ((tick + i) % every === 0) {
          const users = Array.from({ length: size }, () => ({
            partitionKey: key,
            data: JSON.stringify(this.payload(key)),
          }));
          const built = aggregate(users);
          entries.push({ entry: { PartitionKey: built.partitionKey, Data: built.data }, userRecords: size });
          userRecords += size;
          this.aggregates++;
        } else {
          entries.push({
            entry: { PartitionKey: key, Data: Buffer.from(JSON.stringify(this.payload(key))) },
            userRecords: 1,
          });
          userRecords++;
        }
      }
      if (!(await this.put(entries))) {
        // Records that could not be written after retries: stop rather than leave a gap the consumer would be blamed for.
        this.failures++;
        this.running = false;
        break;
      }
      tick++;
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, tickMs - (Date.now() - started))));
    }
  }
}

import type { RecordProcessorFactory } from '../record-processor';

/** The demo's record payload: which producer key and which number in that key's sequence. */
export interface DemoPayload {
  key: string;
  n: number;
}

/** What the demo's processors saw, across all shards. */
export class DeliveryLedger {
  /** Highest number seen per key, to check order per partition key. */
  private readonly lastByKey = new Map<string, number>();
  private readonly seen = new Set<string>();
  delivered = 0;
  duplicates = 0;
  outOfOrder = 0;
  batches = 0;

  record(payload: DemoPayload): void {
    const id = `${payload.key}#${payload.n}`;
    if (this.seen.has(id)) {
      this.duplicates++;
      return;
    }
    this.seen.add(id);
    this.delivered++;
    const last = this.lastByKey.get(payload.key) ?? -1;
    if (payload.n < last) this.outOfOrder++;
    this.lastByKey.set(payload.key, Math.max(last, payload.n));
  }

  get unique(): number {
    return this.seen.size;
  }
}

/** A processor that checks what it gets against what the demo producer wrote, and checkpoints every batch. */
export function demoProcessor(ledger: DeliveryLedger): RecordProcessorFactory {
  return () => ({
    async processRecords({ records, checkpointer }) {
      ledger.batches++;
      for (const record of records) {
        ledger.record(JSON.parse(Buffer.from(record.data).toString('utf8')) as DemoPayload);
      }
      await checkpointer.checkpoint();
    },
    async shutdown({ checkpointer }) {
      await checkpointer?.checkpoint();
    },
  });
}

/**
 * An in-memory Kinesis shard for workflow tests: records with increasing sequence numbers (plain or KPL aggregates),
 * iterators that encode the position they read from, fresh iterators for every position type, reads that honour
 * `maxRecords` and `skipUntil`, and a shard end with child shards.
 */
import type { BatchSummary, ChildShard, HashKeyRange, ResumePosition } from '../../src/consumer-types';
import { comparePositions, type ExtendedSequenceNumber, formatPosition } from '../../src/positions';

/** A Kinesis record in the fake shard; `subRecords` makes it a KPL aggregate of that many user records. */
export interface FakeKinesisRecord {
  sequenceNumber: string;
  subRecords?: number;
  /** When it arrived (ISO), for AT_TIMESTAMP. */
  arrivedAt: string;
}

/** A user record as the processor receives it. */
export type UserRecord = ExtendedSequenceNumber;

/** A monotonic clock (ISO strings), so records and iterators taken in the same millisecond still order. */
let lastClockMs = 0;
export function fakeClock(): string {
  lastClockMs = Math.max(Date.now(), lastClockMs + 1);
  return new Date(lastClockMs).toISOString();
}

/** Sequence number of the i-th record of a fake shard: decimal, increasing, with gaps as in Kinesis. */
export function sequenceNumberAt(index: number): string {
  return (49_000_000_000_000_000n + BigInt(index) * 1_000n).toString();
}

const ITERATOR = /^iterator\/(.+)\/(\d+)$/;

/** An in-memory shard. Iterators encode the index of the next record to read. */
export class FakeShard {
  readonly records: FakeKinesisRecord[] = [];
  closed = false;
  childShards: ChildShard[] = [];
  hashKeyRange: HashKeyRange = { startingHashKey: '0', endingHashKey: '340282366920938463463374607431768211455' };
  /** MillisBehindLatest of a read that leaves `remaining` records unread. */
  millisBehindLatest: (remaining: number) => number = (remaining) => (remaining > 0 ? 60_000 : 0);

  constructor(
    readonly shardId: string,
    readonly parentShardIds: string[] = [],
  ) {}

  /** Appends records; `subRecords` makes each a KPL aggregate. */
  append(count: number, options: { subRecords?: number } = {}): FakeKinesisRecord[] {
    const added: FakeKinesisRecord[] = [];
    for (let i = 0; i < count; i++) {
      const record: FakeKinesisRecord = {
        sequenceNumber: sequenceNumberAt(this.records.length),
        arrivedAt: fakeClock(),
        ...(options.subRecords !== undefined ? { subRecords: options.subRecords } : {}),
      };
      this.records.push(record);
      added.push(record);
    }
    return added;
  }

  /** Closes the shard (split or merge): reading past the last record ends it. */
  close(childShards: ChildShard[]): void {
    this.closed = true;
    this.childShards = childShards;
  }

  /** The user records of Kinesis records [from, to). */
  userRecords(from = 0, to = this.records.length): UserRecord[] {
    return this.records.slice(from, to).flatMap((record) =>
      record.subRecords === undefined
        ? [{ sequenceNumber: record.sequenceNumber }]
        : Array.from({ length: record.subRecords }, (_, subSequenceNumber) => ({
            sequenceNumber: record.sequenceNumber,
            subSequenceNumber,
          })),
    );
  }

  iteratorAt(index: number): string {
    return `iterator/${this.shardId}/${index}`;
  }

  /** Index of the next record an iterator reads. */
  indexOf(iterator: string): number {
    const match = ITERATOR.exec(iterator);
    if (!match || match[1] !== this.shardId) throw new Error(`not an iterator of ${this.shardId}: ${iterator}`);
    return Number(match[2]);
  }

  /** Index of the first record a fresh iterator at `position` reads. */
  indexAt(position: ResumePosition): number {
    switch (position.type) {
      case 'TRIM_HORIZON':
        return 0;
      case 'LATEST':
        return this.records.length;
      case 'AT_TIMESTAMP': {
        const index = this.records.findIndex((record) => record.arrivedAt >= position.timestamp);
        return index < 0 ? this.records.length : index;
      }
      case 'AT_SEQUENCE_NUMBER':
      case 'AFTER_SEQUENCE_NUMBER': {
        const index = this.records.findIndex((record) => record.sequenceNumber === position.sequenceNumber);
        if (index < 0) throw new Error(`no record ${position.sequenceNumber} in ${this.shardId}`);
        return position.type === 'AT_SEQUENCE_NUMBER' ? index : index + 1;
      }
    }
  }

  /** One GetRecords: up to `maxRecords` Kinesis records from the iterator, user records after `skipUntil` only. */
  read(
    iterator: string,
    maxRecords: number,
    skipUntil: ExtendedSequenceNumber | undefined,
  ): { summary: Omit<BatchSummary, 'handle'>; records: UserRecord[] } {
    const from = this.indexOf(iterator);
    const to = Math.min(this.records.length, from + maxRecords);
    const all = this.userRecords(from, to);
    const records = skipUntil ? all.filter((record) => comparePositions(record, skipUntil) > 0) : all;
    const ended = this.closed && to >= this.records.length;
    const last = records.at(-1);
    const lastKinesis = to > from ? this.records[to - 1] : undefined;
    return {
      records,
      summary: {
        recordCount: records.length,
        kinesisRecordCount: to - from,
        bytes: records.length * 10,
        ...(lastKinesis ? { lastSequenceNumber: lastKinesis.sequenceNumber } : {}),
        ...(last ? { lastDelivered: last } : {}),
        millisBehindLatest: this.millisBehindLatest(this.records.length - to),
        ...(ended ? {} : { nextIterator: this.iteratorAt(to) }),
        ...(ended && this.childShards.length > 0 ? { childShards: this.childShards } : {}),
        deaggregationFailures: [],
        deaggregationFailureCount: 0,
        droppedOutOfRange: 0,
        droppedCheckpointed: all.length - records.length,
        readAt: Date.now(),
      },
    };
  }
}

/** The formatted positions (`seq` or `seq/sub`) of the user records of Kinesis records [from, to) of a shard. */
export function positionsOf(shard: FakeShard, from = 0, to = shard.records.length): string[] {
  return shard.userRecords(from, to).map((record) => formatPosition(record));
}

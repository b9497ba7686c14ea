/**
 * De-aggregation of KPL (Kinesis Producer Library) aggregated records, as KCL does before records reach a processor.
 *
 * A typed, promise-based wrapper around aws-kinesis-agg's callback API that works around its pitfalls:
 * - its `index.d.ts` imports aws-sdk v2 and aws-lambda types, so it is loaded with `require` and typed here;
 * - its after-callback is called once per failing user record and then once more at the end, and again with our own
 *   error if a callback throws: the callbacks here never throw and ignore every call after the final one;
 * - `explicitPartitionKey` holds the table's first explicit hash key for a user record that had none: whether a user
 *   record really carried one is read from the aggregate's protobuf.
 *
 * Plain records are not handed to the library at all (it would copy their data only to find they are not aggregated).
 */
import type { _Record } from '@aws-sdk/client-kinesis';
import type { KinesisRecord } from '../record-processor';

/** An aggregated record that could not be de-aggregated: none of its user records were delivered. */
export interface DeaggregationFailure {
  /** Sequence number of the Kinesis record that carried the aggregate. */
  sequenceNumber: string;
  /** Partition key of the Kinesis record that carried the aggregate. */
  partitionKey: string;
  /** Why, as aws-kinesis-agg (or the checks here) put it, e.g. `Invalid record checksum`. */
  error: string;
}

export interface DeaggregationResult {
  /** User records in input order; the user records of an aggregate in their order inside it. */
  records: KinesisRecord[];
  /** One entry per aggregated record that was skipped, in input order. */
  failures: DeaggregationFailure[];
}

export interface DeaggregateOptions {
  /**
   * Verify the MD5 checksum that ends every KPL aggregate; an aggregate whose checksum does not match is a failure.
   * @default true
   */
  computeChecksums?: boolean;
}

/**
 * A user record as aws-kinesis-agg returns it for a record in the aws-sdk v2 (camelCase) shape. The library is handed
 * that shape on purpose: for an SDK v3 (PascalCase) record it renames every key of the input and of each user record,
 * which cost about a third of the time of de-aggregation.
 */
interface KplUserRecord {
  /** Undefined when the user record's partition key index lies outside the aggregate's table. */
  partitionKey?: string;
  /** Unreliable: the table's first key when the user record had no explicit hash key (see the module comment). */
  explicitPartitionKey?: string;
  sequenceNumber?: string;
  subSequenceNumber?: number;
  /** Base64. */
  data: string;
}

/** The part of aws-kinesis-agg this module uses. */
interface KplLibrary {
  deaggregate(
    record: { data: Uint8Array; sequenceNumber: string; partitionKey: string },
    computeChecksums: boolean,
    perRecordCallback: (err: unknown, userRecord?: KplUserRecord) => void,
    afterRecordCallback: (err?: unknown, errorUserRecord?: KplUserRecord) => void,
  ): void;
}

/** aws-kinesis-agg's protobufjs message type for `AggregatedRecord` (lib/kpl.json). */
interface KplAggregatedRecordType {
  decode(buffer: Uint8Array): { records: object[] };
}

// eslint-disable-next-line @typescript-eslint/no-require-imports -- its index.d.ts needs aws-sdk v2 and aws-lambda types
const kpl = require('aws-kinesis-agg') as KplLibrary;
// eslint-disable-next-line @typescript-eslint/no-require-imports -- same package, its protobuf message type
const { AggregatedRecord } = require('aws-kinesis-agg/lib/common') as { AggregatedRecord: KplAggregatedRecordType };

/** Bytes every KPL aggregate starts with, before the protobuf message; an MD5 digest of the message ends it. */
const KPL_MAGIC = [0xf3, 0x89, 0x9a, 0xc2] as const;
const KPL_DIGEST_BYTES = 16;

/** True if `data` starts with the KPL magic bytes `f3 89 9a c2`, i.e. claims to be a KPL aggregate. */
export function isAggregated(data: Uint8Array): boolean {
  return (
    data.length >= KPL_MAGIC.length &&
    data[0] === KPL_MAGIC[0] &&
    data[1] === KPL_MAGIC[1] &&
    data[2] === KPL_MAGIC[2] &&
    data[3] === KPL_MAGIC[3]
  );
}

/**
 * Turns Kinesis records (as GetRecords returns them) into user records, in input order.
 *
 * - A plain record becomes one `KinesisRecord` without `subSequenceNumber`; its `data` is the record's own
 *   `Uint8Array` (not copied).
 * - A KPL aggregate becomes one `KinesisRecord` per user record, with `subSequenceNumber` 0..n-1 and the carrying
 *   record's sequence number and arrival timestamp (one `Date` shared by them); `explicitHashKey` is set only for a user
 *   record that carried one.
 * - An aggregate that cannot be read (bad checksum, truncated or garbage protobuf, an index outside its tables, no user
 *   records at all) yields no records and one {@link DeaggregationFailure}; the rest of the batch is still delivered.
 *   (Java KCL instead passes a record with a bad checksum or protobuf through as a plain record.)
 *
 * A record without `ApproximateArrivalTimestamp` (some emulators omit it) gets the time of this call.
 *
 * @throws TypeError if a record has no `SequenceNumber` or `PartitionKey` (Kinesis always returns both).
 */
export async function deaggregateRecords(
  records: readonly _Record[],
  options: DeaggregateOptions = {},
): Promise<DeaggregationResult> {
  const computeChecksums = options.computeChecksums ?? true;
  const result: DeaggregationResult = { records: [], failures: [] };
  let callTime: Date | undefined;

  for (const record of records) {
    const { SequenceNumber: sequenceNumber, PartitionKey: partitionKey } = record;
    if (sequenceNumber === undefined || partitionKey === undefined) {
      throw new TypeError(`Kinesis record without ${sequenceNumber === undefined ? 'SequenceNumber' : 'PartitionKey'}`);
    }
    const data = record.Data ?? new Uint8Array(0);
    const approximateArrivalTimestamp = record.ApproximateArrivalTimestamp ?? (callTime ??= new Date());

    if (!isAggregated(data)) {
      result.records.push({ sequenceNumber, partitionKey, data, approximateArrivalTimestamp });
      continue;
    }

    let outcome = runLibrary(data, sequenceNumber, partitionKey, computeChecksums);
    if (outcome instanceof Promise) outcome = await outcome;
    const error =
      outcome.error ??
      appendUserRecords(result.records, outcome.userRecords, data, sequenceNumber, approximateArrivalTimestamp);
    if (error !== undefined) result.failures.push({ sequenceNumber, partitionKey, error });
  }
  return result;
}

type LibraryOutcome = { userRecords: KplUserRecord[]; error?: undefined } | { error: string };

/**
 * Runs the library on one aggregate. Its callbacks are synchronous (4.2.x), so this returns the outcome directly; should
 * a future version call back later, it returns a promise of it instead.
 */
function runLibrary(
  data: Uint8Array,
  sequenceNumber: string,
  partitionKey: string,
  computeChecksums: boolean,
): LibraryOutcome | Promise<LibraryOutcome> {
  const userRecords: KplUserRecord[] = [];
  let firstError: string | undefined;
  let outcome: LibraryOutcome | undefined;
  let settle: ((outcome: LibraryOutcome) => void) | undefined;

  const finish = (finalError: string | undefined) => {
    if (outcome !== undefined) return; // a call after the final one
    const error = firstError ?? finalError;
    outcome = error === undefined ? { userRecords } : { error };
    settle?.(outcome);
  };

  try {
    kpl.deaggregate(
      { data, sequenceNumber, partitionKey },
      computeChecksums,
      (err, userRecord) => {
        if (outcome !== undefined) return;
        if (err !== null && err !== undefined) firstError ??= messageOf(err);
        else if (userRecord === undefined) firstError ??= 'no user record in a callback without error';
        else userRecords.push(userRecord);
      },
      (err, errorUserRecord) => {
        if (errorUserRecord !== undefined) {
          // One user record failed; the final call follows. The whole aggregate counts as failed.
          if (outcome === undefined) {
            firstError ??= `user record ${errorUserRecord.subSequenceNumber ?? '?'}: ${messageOf(err)}`;
          }
          return;
        }
        finish(err === null || err === undefined ? undefined : messageOf(err));
      },
    );
  } catch (err) {
    finish(messageOf(err));
  }

  if (outcome !== undefined) return outcome;
  return new Promise<LibraryOutcome>((resolve) => {
    settle = resolve;
  });
}

/**
 * Appends an aggregate's user records to `out`, or nothing and returns why when one of them is unusable.
 */
function appendUserRecords(
  out: KinesisRecord[],
  userRecords: readonly KplUserRecord[],
  data: Uint8Array,
  sequenceNumber: string,
  approximateArrivalTimestamp: Date,
): string | undefined {
  // The library fills explicitPartitionKey for every user record as soon as the explicit hash key table is non-empty
  // (with the first key when the record had none): only then is the protobuf decoded again, to see who really had one.
  // (So an aggregate whose every user record points outside a non-empty table goes unnoticed: no explicit hash keys.)
  let messages: readonly object[] | undefined;
  if (userRecords.some((userRecord) => userRecord.explicitPartitionKey !== undefined)) {
    try {
      messages = AggregatedRecord.decode(data.subarray(KPL_MAGIC.length, data.length - KPL_DIGEST_BYTES)).records;
    } catch (err) {
      return messageOf(err);
    }
  }

  // KPL never writes an empty aggregate, but garbage can decode as one: protobufjs reads known fields whatever their wire
  // type, and skips unknown ones. Nothing is lost by reporting it, and it shows the damage.
  if (userRecords.length === 0) return 'aggregate holds no user records';

  const start = out.length;
  for (let i = 0; i < userRecords.length; i++) {
    const userRecord = userRecords[i]!;
    if (typeof userRecord.partitionKey !== 'string') {
      out.length = start;
      return `user record ${i}: partition key index out of range`;
    }
    const kinesisRecord: KinesisRecord = {
      sequenceNumber,
      subSequenceNumber: i,
      partitionKey: userRecord.partitionKey,
      data: Buffer.from(userRecord.data, 'base64'),
      approximateArrivalTimestamp,
    };
    const message = messages?.[i];
    if (message !== undefined && Object.prototype.hasOwnProperty.call(message, 'explicit_hash_key_index')) {
      if (userRecord.explicitPartitionKey === undefined) {
        out.length = start;
        return `user record ${i}: explicit hash key index out of range`;
      }
      kinesisRecord.explicitHashKey = userRecord.explicitPartitionKey;
    }
    out.push(kinesisRecord);
  }
  return undefined;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

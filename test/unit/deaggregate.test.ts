import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { _Record } from '@aws-sdk/client-kinesis';
import { deaggregateRecords, isAggregated } from '../../src/kinesis/deaggregate';
import type { KinesisRecord } from '../../src/record-processor';
import {
  ARRIVAL_TIME,
  aggregate,
  aggregateWithLibrary,
  corruptAggregate,
  plainRecord,
  rawAggregate,
  sequenceNumber,
  type CorruptionKind,
  type UserRecordInit,
} from '../helpers/records';

const utf8 = (text: string) => Buffer.from(text, 'utf8');

/** The records `deaggregateRecords` should deliver for an aggregate of `userRecords` carried by record n. */
function expectedUserRecords(n: number, userRecords: readonly UserRecordInit[]): KinesisRecord[] {
  return userRecords.map((userRecord, i) => ({
    sequenceNumber: sequenceNumber(n),
    subSequenceNumber: i,
    partitionKey: userRecord.partitionKey,
    data: typeof userRecord.data === 'string' ? utf8(userRecord.data) : Buffer.from(userRecord.data),
    approximateArrivalTimestamp: ARRIVAL_TIME,
    ...(userRecord.explicitHashKey === undefined ? {} : { explicitHashKey: userRecord.explicitHashKey }),
  }));
}

/** Compares records field by field, with data compared as bytes (Buffer vs Uint8Array does not matter). */
function assertRecords(actual: readonly KinesisRecord[], expected: readonly KinesisRecord[]): void {
  const normalize = (records: readonly KinesisRecord[]) =>
    records.map((record) => ({ ...record, data: Buffer.from(record.data).toString('hex') }));
  assert.deepEqual(normalize(actual), normalize(expected));
}

describe('isAggregated', () => {
  test('recognizes the KPL magic prefix and nothing else', () => {
    assert.equal(isAggregated(aggregate([{ partitionKey: 'a', data: 'x' }]).data), true);
    assert.equal(isAggregated(Buffer.from('f3899ac2', 'hex')), true);
    assert.equal(isAggregated(Buffer.from('f3899a', 'hex')), false);
    assert.equal(isAggregated(Buffer.from('f3899ac3', 'hex')), false);
    assert.equal(isAggregated(new Uint8Array(0)), false);
    assert.equal(isAggregated(utf8('{"plain":"json"}')), false);
  });
});

describe('deaggregateRecords', () => {
  test('delivers a mixed batch of plain and aggregated records in input order', async () => {
    const first: UserRecordInit[] = [
      { partitionKey: 'user-1', data: 'one' },
      { partitionKey: 'user-2', data: 'two' },
      { partitionKey: 'user-1', data: 'three' },
    ];
    const second: UserRecordInit[] = [
      { partitionKey: 'user-3', data: 'four' },
      { partitionKey: 'user-4', data: 'five' },
    ];
    const batch = [
      plainRecord({ sequenceNumber: 1, partitionKey: 'p1', data: 'plain one' }),
      plainRecord({ sequenceNumber: 2, ...aggregate(first) }),
      plainRecord({ sequenceNumber: 3, partitionKey: 'p3', data: 'plain two' }),
      plainRecord({ sequenceNumber: 4, ...aggregate(second) }),
    ];

    const result = await deaggregateRecords(batch);

    assert.deepEqual(result.failures, []);
    assertRecords(result.records, [
      {
        sequenceNumber: sequenceNumber(1),
        partitionKey: 'p1',
        data: utf8('plain one'),
        approximateArrivalTimestamp: ARRIVAL_TIME,
      },
      ...expectedUserRecords(2, first),
      {
        sequenceNumber: sequenceNumber(3),
        partitionKey: 'p3',
        data: utf8('plain two'),
        approximateArrivalTimestamp: ARRIVAL_TIME,
      },
      ...expectedUserRecords(4, second),
    ]);
    // A plain record has no sub-sequence number at all, not even an undefined one.
    assert.equal('subSequenceNumber' in result.records[0]!, false);
    assert.equal('explicitHashKey' in result.records[0]!, false);
    // A plain record's data is handed over as is.
    assert.equal(result.records[0]!.data, batch[0]!.Data);
  });

  test('an aggregate without explicit hash keys yields records without explicitHashKey', async () => {
    const userRecords: UserRecordInit[] = [
      { partitionKey: 'a', data: 'x' },
      { partitionKey: 'b', data: 'y' },
    ];

    const { records, failures } = await deaggregateRecords([
      plainRecord({ sequenceNumber: 5, ...aggregate(userRecords) }),
    ]);

    assert.deepEqual(failures, []);
    assertRecords(records, expectedUserRecords(5, userRecords));
    assert.equal(
      records.some((record) => 'explicitHashKey' in record),
      false,
    );
  });

  test('every user record keeps its own explicit hash key', async () => {
    const userRecords: UserRecordInit[] = [
      { partitionKey: 'a', data: 'x', explicitHashKey: '0' },
      { partitionKey: 'b', data: 'y', explicitHashKey: '170141183460469231731687303715884105728' },
      { partitionKey: 'c', data: 'z', explicitHashKey: '0' },
    ];
    const built = aggregate(userRecords);
    assert.equal(built.explicitHashKey, '0');

    const { records, failures } = await deaggregateRecords([plainRecord({ sequenceNumber: 6, ...built })]);

    assert.deepEqual(failures, []);
    assertRecords(records, expectedUserRecords(6, userRecords));
  });

  test('only the user record that carried an explicit hash key gets one (the library reports the first key for all)', async () => {
    const userRecords: UserRecordInit[] = [
      { partitionKey: 'a', data: 'x' },
      { partitionKey: 'b', data: 'y', explicitHashKey: '12345678901234567890' },
      { partitionKey: 'c', data: 'z' },
      { partitionKey: 'd', data: 'w', explicitHashKey: '42' },
    ];
    const built = aggregate(userRecords);
    // aws-kinesis-agg takes the aggregate's explicit hash key from the first user record only.
    assert.equal(built.explicitHashKey, undefined);

    const { records, failures } = await deaggregateRecords([plainRecord({ sequenceNumber: 7, ...built })]);

    assert.deepEqual(failures, []);
    assertRecords(records, expectedUserRecords(7, userRecords));
    assert.deepEqual(
      records.map((record) => record.explicitHashKey),
      [undefined, '12345678901234567890', undefined, '42'],
    );
  });

  test('partition keys and explicit hash keys that look like array indexes keep their user records', async () => {
    const userRecords: UserRecordInit[] = [
      { partitionKey: 'user', data: 'a', explicitHashKey: '340282366920938463463374607431768211455' },
      { partitionKey: '7', data: 'b', explicitHashKey: '9' },
      { partitionKey: '3', data: 'c', explicitHashKey: '0' },
      { partitionKey: '7', data: 'd' },
    ];

    const { records, failures } = await deaggregateRecords([
      plainRecord({ sequenceNumber: 9, ...aggregate(userRecords) }),
    ]);

    assert.deepEqual(failures, []);
    assertRecords(records, expectedUserRecords(9, userRecords));
  });

  for (const kind of ['checksum', 'truncated', 'garbage'] as const satisfies readonly CorruptionKind[]) {
    test(`a corrupt aggregate (${kind}) is skipped and reported once; the records around it are delivered`, async () => {
      const before: UserRecordInit[] = [
        { partitionKey: 'a', data: 'before-1' },
        { partitionKey: 'b', data: 'before-2' },
      ];
      const batch = [
        plainRecord({ sequenceNumber: 10, ...aggregate(before) }),
        plainRecord({ sequenceNumber: 11, partitionKey: 'broken', data: corruptAggregate(kind) }),
        plainRecord({ sequenceNumber: 12, partitionKey: 'p', data: 'after' }),
      ];

      const { records, failures } = await deaggregateRecords(batch);

      assertRecords(records, [
        ...expectedUserRecords(10, before),
        {
          sequenceNumber: sequenceNumber(12),
          partitionKey: 'p',
          data: utf8('after'),
          approximateArrivalTimestamp: ARRIVAL_TIME,
        },
      ]);
      assert.equal(failures.length, 1);
      assert.equal(failures[0]!.sequenceNumber, sequenceNumber(11));
      assert.equal(failures[0]!.partitionKey, 'broken');
      if (kind === 'checksum') assert.equal(failures[0]!.error, 'Invalid record checksum');
      else if (kind === 'truncated') assert.match(failures[0]!.error, /index out of range/);
      else assert.match(failures[0]!.error, /invalid wire type 7/);
    });
  }

  test('without checksum verification, an aggregate with a wrong digest is delivered; broken protobuf still fails', async () => {
    const batch = [
      plainRecord({ sequenceNumber: 1, data: corruptAggregate('checksum') }),
      plainRecord({ sequenceNumber: 2, data: corruptAggregate('truncated') }),
      plainRecord({ sequenceNumber: 3, data: corruptAggregate('garbage') }),
    ];

    const { records, failures } = await deaggregateRecords(batch, { computeChecksums: false });

    assert.deepEqual(
      records.map((record) => [record.sequenceNumber, record.subSequenceNumber, record.partitionKey]),
      [
        [sequenceNumber(1), 0, 'corrupt-1'],
        [sequenceNumber(1), 1, 'corrupt-2'],
      ],
    );
    assert.deepEqual(
      failures.map((failure) => failure.sequenceNumber),
      [sequenceNumber(2), sequenceNumber(3)],
    );
  });

  test('aggregates the KPL would not write are failures: indexes outside their tables, no user records, too short', async () => {
    const batch = [
      plainRecord({
        sequenceNumber: 1,
        data: rawAggregate({
          partitionKeyTable: ['a'],
          records: [
            { partitionKeyIndex: 0, data: 'ok' },
            { partitionKeyIndex: 1, data: 'x' },
          ],
        }),
      }),
      plainRecord({
        sequenceNumber: 2,
        data: rawAggregate({
          partitionKeyTable: ['a'],
          explicitHashKeyTable: ['7'],
          records: [
            { partitionKeyIndex: 0, explicitHashKeyIndex: 0, data: 'ok' },
            { partitionKeyIndex: 0, explicitHashKeyIndex: 3, data: 'x' },
          ],
        }),
      }),
      plainRecord({ sequenceNumber: 3, data: rawAggregate({ partitionKeyTable: [], records: [] }) }),
      plainRecord({ sequenceNumber: 4, data: Buffer.from('f3899ac2', 'hex') }),
      plainRecord({ sequenceNumber: 5, partitionKey: 'p', data: 'survivor' }),
    ];

    const { records, failures } = await deaggregateRecords(batch);

    assertRecords(records, [
      {
        sequenceNumber: sequenceNumber(5),
        partitionKey: 'p',
        data: utf8('survivor'),
        approximateArrivalTimestamp: ARRIVAL_TIME,
      },
    ]);
    assert.deepEqual(failures, [
      {
        sequenceNumber: sequenceNumber(1),
        partitionKey: 'pk',
        error: 'user record 1: partition key index out of range',
      },
      {
        sequenceNumber: sequenceNumber(2),
        partitionKey: 'pk',
        error: 'user record 1: explicit hash key index out of range',
      },
      { sequenceNumber: sequenceNumber(3), partitionKey: 'pk', error: 'aggregate holds no user records' },
      { sequenceNumber: sequenceNumber(4), partitionKey: 'pk', error: 'Invalid record checksum' },
    ]);
  });

  test('a user record without an explicit hash key index next to one with it, encoded by hand', async () => {
    const data = rawAggregate({
      partitionKeyTable: ['a', 'b'],
      explicitHashKeyTable: ['99', '100'],
      records: [
        { partitionKeyIndex: 1, data: 'no key' },
        { partitionKeyIndex: 0, explicitHashKeyIndex: 1, data: 'second key' },
      ],
    });

    const { records, failures } = await deaggregateRecords([plainRecord({ sequenceNumber: 8, data })]);

    assert.deepEqual(failures, []);
    assertRecords(
      records,
      expectedUserRecords(8, [
        { partitionKey: 'b', data: 'no key' },
        { partitionKey: 'a', data: 'second key', explicitHashKey: '100' },
      ]),
    );
  });

  test('empty data: a plain record, a record without Data, and an empty user record', async () => {
    const userRecords: UserRecordInit[] = [
      { partitionKey: 'a', data: '' },
      { partitionKey: 'b', data: new Uint8Array(0) },
      { partitionKey: 'c', data: 'not empty' },
    ];
    const withoutData: _Record = {
      SequenceNumber: sequenceNumber(2),
      PartitionKey: 'none',
      Data: undefined,
      ApproximateArrivalTimestamp: ARRIVAL_TIME,
    };
    const batch = [
      plainRecord({ sequenceNumber: 1, partitionKey: 'empty', data: new Uint8Array(0) }),
      withoutData,
      plainRecord({ sequenceNumber: 3, ...aggregate(userRecords) }),
    ];

    const { records, failures } = await deaggregateRecords(batch);

    assert.deepEqual(failures, []);
    assertRecords(records, [
      {
        sequenceNumber: sequenceNumber(1),
        partitionKey: 'empty',
        data: new Uint8Array(0),
        approximateArrivalTimestamp: ARRIVAL_TIME,
      },
      {
        sequenceNumber: sequenceNumber(2),
        partitionKey: 'none',
        data: new Uint8Array(0),
        approximateArrivalTimestamp: ARRIVAL_TIME,
      },
      ...expectedUserRecords(3, userRecords),
    ]);
  });

  test('bytes that are not UTF-8 come back exactly, plain and aggregated', async () => {
    const bytes = Uint8Array.from([0xff, 0xfe, 0x00, 0xc3, 0x28, 0xa0, 0xa1, 0xf0, 0x28, 0x8c, 0xbc, 0x80]);
    const userRecords: UserRecordInit[] = [
      { partitionKey: 'a', data: bytes },
      { partitionKey: 'b', data: bytes.subarray(2, 7) },
    ];

    const { records, failures } = await deaggregateRecords([
      plainRecord({ sequenceNumber: 1, data: bytes }),
      plainRecord({ sequenceNumber: 2, ...aggregate(userRecords) }),
    ]);

    assert.deepEqual(failures, []);
    assert.deepEqual(
      records.map((record) => Buffer.from(record.data).toString('hex')),
      ['fffe00c328a0a1f0288cbc80', 'fffe00c328a0a1f0288cbc80', '00c328a0a1'],
    );
    for (const record of records) assert.ok(record.data instanceof Uint8Array);
  });

  test('256-character partition keys, ASCII and multi-byte, plain and aggregated', async () => {
    const ascii = 'k'.repeat(256);
    const multiByte = '€'.repeat(128) + 'é'.repeat(128); // 256 characters, 640 UTF-8 bytes
    const userRecords: UserRecordInit[] = [
      { partitionKey: ascii, data: 'ascii' },
      { partitionKey: multiByte, data: 'multi-byte' },
    ];

    const { records, failures } = await deaggregateRecords([
      plainRecord({ sequenceNumber: 1, partitionKey: ascii, data: 'plain' }),
      plainRecord({ sequenceNumber: 2, ...aggregate(userRecords) }),
    ]);

    assert.deepEqual(failures, []);
    assert.deepEqual(
      records.map((record) => record.partitionKey),
      [ascii, ascii, multiByte],
    );
    assert.equal(multiByte.length, 256);
  });

  test('a 1 MiB plain record is delivered whole', async () => {
    const data = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31 + 7) & 0xff;

    const { records, failures } = await deaggregateRecords([plainRecord({ sequenceNumber: 1, data })]);

    assert.deepEqual(failures, []);
    assert.equal(records.length, 1);
    assert.equal(records[0]!.data.length, 1024 * 1024);
    assert.ok(Buffer.from(records[0]!.data).equals(data));
  });

  test('an aggregate of 1000 user records round-trips', async () => {
    const userRecords: UserRecordInit[] = Array.from({ length: 1000 }, (_, i) => ({
      partitionKey: `key-${i % 37}`,
      data: `payload ${i} `.repeat(1 + (i % 5)),
      ...(i % 10 === 3 ? { explicitHashKey: String(BigInt(i) * 340282366920938463463374607431768211n) } : {}),
    }));

    const { records, failures } = await deaggregateRecords([
      plainRecord({ sequenceNumber: 1, data: 'first' }),
      plainRecord({ sequenceNumber: 2, ...aggregate(userRecords) }),
      plainRecord({ sequenceNumber: 3, data: 'last' }),
    ]);

    assert.deepEqual(failures, []);
    assert.equal(records.length, 1002);
    assertRecords(records.slice(1, 1001), expectedUserRecords(2, userRecords));
    assert.deepEqual(
      records.slice(1, 1001).map((record) => record.subSequenceNumber),
      Array.from({ length: 1000 }, (_, i) => i),
    );
  });

  test('a record without ApproximateArrivalTimestamp gets the time of the call', async () => {
    const before = Date.now();
    const { records } = await deaggregateRecords([
      plainRecord({ sequenceNumber: 1, data: 'plain', approximateArrivalTimestamp: null }),
      plainRecord({
        sequenceNumber: 2,
        ...aggregate([{ partitionKey: 'a', data: 'x' }]),
        approximateArrivalTimestamp: null,
      }),
    ]);
    const after = Date.now();

    assert.equal(records.length, 2);
    for (const record of records) {
      assert.ok(record.approximateArrivalTimestamp.getTime() >= before);
      assert.ok(record.approximateArrivalTimestamp.getTime() <= after);
    }
  });

  test('an empty batch yields nothing', async () => {
    assert.deepEqual(await deaggregateRecords([]), { records: [], failures: [] });
  });

  test('a record without a sequence number is rejected', async () => {
    await assert.rejects(deaggregateRecords([{ SequenceNumber: undefined, PartitionKey: 'p', Data: utf8('x') }]), {
      name: 'TypeError',
      message: 'Kinesis record without SequenceNumber',
    });
  });
});

describe('aggregate (test helper)', () => {
  test("builds what aws-kinesis-agg's RecordAggregator builds", () => {
    const userRecords: UserRecordInit[] = [
      { partitionKey: 'alpha', data: 'one', explicitHashKey: '170141183460469231731687303715884105728' },
      { partitionKey: 'beta', data: Uint8Array.from([0, 255]) },
      { partitionKey: 'alpha', data: '', explicitHashKey: '99999999999999999999' },
    ];

    assert.deepEqual(aggregate(userRecords), aggregateWithLibrary(userRecords));
  });

  test('RecordAggregator misorders integer-like keys, which is why aggregate() encodes its own tables', async () => {
    const userRecords: UserRecordInit[] = [
      { partitionKey: '2', data: 'for two' },
      { partitionKey: '1', data: 'for one' },
    ];

    const { records } = await deaggregateRecords([
      plainRecord({ sequenceNumber: 1, ...aggregateWithLibrary(userRecords) }),
      plainRecord({ sequenceNumber: 2, ...aggregate(userRecords) }),
    ]);

    assert.deepEqual(
      records.map((record) => [record.partitionKey, Buffer.from(record.data).toString()]),
      [
        ['1', 'for two'],
        ['2', 'for one'],
        ['2', 'for two'],
        ['1', 'for one'],
      ],
    );
  });
});

/** The library's callback API, to stand in for it where its pitfalls cannot be provoked with real input. */
type Deaggregate = (
  record: { data: Uint8Array; sequenceNumber: string; partitionKey: string },
  computeChecksums: boolean,
  perRecordCallback: (err: unknown, userRecord?: object) => void,
  afterRecordCallback: (err?: unknown, errorUserRecord?: object) => void,
) => void;

// eslint-disable-next-line @typescript-eslint/no-require-imports -- its index.d.ts needs aws-sdk v2 and aws-lambda types
const library = require('aws-kinesis-agg') as { deaggregate: Deaggregate };

async function withLibrary<T>(replacement: (original: Deaggregate) => Deaggregate, run: () => Promise<T>): Promise<T> {
  const original = library.deaggregate;
  library.deaggregate = replacement(original);
  try {
    return await run();
  } finally {
    library.deaggregate = original;
  }
}

describe('deaggregateRecords and the library callback pitfalls', () => {
  const userRecords: UserRecordInit[] = [
    { partitionKey: 'a', data: 'x' },
    { partitionKey: 'b', data: 'y' },
    { partitionKey: 'c', data: 'z' },
  ];

  test('an error for one user record fails the whole aggregate, reported once, despite the later final call', async () => {
    const batch = [
      plainRecord({ sequenceNumber: 1, ...aggregate(userRecords) }),
      plainRecord({ sequenceNumber: 2, ...aggregate(userRecords) }),
    ];

    const { records, failures } = await withLibrary(
      (original) => (record, checksums, perRecord, after) => {
        if (record.sequenceNumber !== sequenceNumber(1)) return original(record, checksums, perRecord, after);
        // What 4.2.8 does when a user record fails: the after-callback with the error and the record, then it goes on.
        perRecord(null, {
          partitionKey: 'a',
          sequenceNumber: record.sequenceNumber,
          subSequenceNumber: 0,
          data: 'eA==',
        });
        after(new Error('boom'), { partitionKey: 'pk', sequenceNumber: record.sequenceNumber, subSequenceNumber: 1 });
        perRecord(null, {
          partitionKey: 'c',
          sequenceNumber: record.sequenceNumber,
          subSequenceNumber: 2,
          data: 'eg==',
        });
        after();
      },
      () => deaggregateRecords(batch),
    );

    assert.deepEqual(failures, [
      { sequenceNumber: sequenceNumber(1), partitionKey: 'a', error: 'user record 1: boom' },
    ]);
    assertRecords(records, expectedUserRecords(2, userRecords));
  });

  test('calls after the final one are ignored', async () => {
    const batch = [plainRecord({ sequenceNumber: 1, ...aggregate(userRecords) })];

    const { records, failures } = await withLibrary(
      (original) => (record, checksums, perRecord, after) => {
        original(record, checksums, perRecord, after);
        // What 4.2.8 does when the final callback throws: it calls it again with that error.
        after(new Error('thrown by the after-callback'));
        perRecord(null, { partitionKey: 'late', subSequenceNumber: 3, data: '' });
      },
      () => deaggregateRecords(batch),
    );

    assert.deepEqual(failures, []);
    assertRecords(records, expectedUserRecords(1, userRecords));
  });

  test('callbacks that come later, and calls after the final one, are handled', async () => {
    const batch = [plainRecord({ sequenceNumber: 1, ...aggregate(userRecords) })];

    const { records, failures } = await withLibrary(
      (original) => (record, checksums, perRecord, after) => {
        setImmediate(() => {
          original(record, checksums, perRecord, after);
          after();
          after(new Error('a late error'));
          perRecord(null, { partitionKey: 'late', subSequenceNumber: 3, data: '' });
        });
      },
      () => deaggregateRecords(batch),
    );

    assert.deepEqual(failures, []);
    assertRecords(records, expectedUserRecords(1, userRecords));
  });

  test('a library that throws fails only that aggregate', async () => {
    const batch = [
      plainRecord({ sequenceNumber: 1, ...aggregate(userRecords) }),
      plainRecord({ sequenceNumber: 2, partitionKey: 'p', data: 'plain' }),
    ];

    const { records, failures } = await withLibrary(
      () => () => {
        throw new Error('thrown');
      },
      () => deaggregateRecords(batch),
    );

    assert.deepEqual(failures, [{ sequenceNumber: sequenceNumber(1), partitionKey: 'a', error: 'thrown' }]);
    assert.deepEqual(
      records.map((record) => record.sequenceNumber),
      [sequenceNumber(2)],
    );
  });
});

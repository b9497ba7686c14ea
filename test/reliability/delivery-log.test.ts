/**
 * The crash suite's checker (test/helpers/delivery-log.ts) on hand-made delivery logs: a clean kill and resume passes;
 * a lost record, a duplicate no kill explains, a duplicate behind a durable checkpoint, a duplicate from an older batch,
 * keys out of order and a child ahead of its parent are each reported.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { WorkerProcessLine } from '../fixtures/worker-process';
import { checkDeliveries, type DeliveryCheckInput } from '../helpers/delivery-log';

type Body = WorkerProcessLine extends infer L ? (L extends unknown ? Omit<L, 'at'> : never) : never;

/** Positions: record `<key>#<n>` sits at sequence number 100 + 10 × its place in `ORDER`, sub-sequence none. */
const ORDER = ['a#0', 'a#1', 'b#0', 'a#2', 'b#1', 'a#3'];
const positionOf = (data: string) => ({ sequenceNumber: String(100 + 10 * ORDER.indexOf(data)) });

function record(pid: number, instance: string, batch: string, data: string, shardId = 'shard-0'): Body {
  return {
    kind: 'record',
    pid,
    shardId,
    instance,
    batch,
    ...positionOf(data),
    partitionKey: data.split('#')[0]!,
    data,
  };
}

function batch(
  pid: number,
  instance: string,
  id: string,
  data: string[],
  checkpointed: boolean,
  shardId = 'shard-0',
): Body[] {
  return [
    { kind: 'batch' as const, pid, shardId, instance, batch: id, count: data.length },
    ...data.map((d) => record(pid, instance, id, d, shardId)),
    ...(checkpointed
      ? [{ kind: 'checkpoint', pid, shardId, instance, batch: id, position: 'batch-end' } as const]
      : []),
  ];
}

/** Lines stamped 1 ms apart, from t = 1000. */
function stamp(bodies: Body[]): WorkerProcessLine[] {
  return bodies.map((body, i) => ({ ...body, at: 1_000 + i }));
}

/**
 * Worker 1 delivers a#0 a#1 b#0 (checkpointed, durable), then a#2 b#1 and is killed before that batch's checkpoint;
 * worker 2 resumes after b#0 and delivers a#2 b#1 again, then a#3 (or `resumed`).
 */
function cleanRun(resumed = ['a#2', 'b#1', 'a#3']): DeliveryCheckInput & { killAt: number } {
  const lines = stamp([
    { kind: 'initialize', pid: 1, shardId: 'shard-0', instance: '1/1', startingPosition: 'TRIM_HORIZON' },
    ...batch(1, '1/1', '1:1', ['a#0', 'a#1', 'b#0'], true),
    ...batch(1, '1/1', '1:2', ['a#2', 'b#1'], false),
    { kind: 'initialize', pid: 2, shardId: 'shard-0', instance: '2/1', startingPosition: positionOf('b#0') },
    ...batch(2, '2/1', '2:1', resumed, true),
  ]);
  const killAt = lines.find((line) => line.kind === 'initialize' && line.pid === 2)!.at - 1;
  return {
    lines,
    produced: new Map(ORDER.map((data) => [data, { key: data.split('#')[0]!, n: Number(data.split('#')[1]) }])),
    kills: [{ pid: 1, at: killAt }],
    snapshots: [{ at: killAt - 2, shardId: 'shard-0', checkpoint: positionOf('b#0') }],
    parents: new Map(),
    killAt,
  };
}

const problems = (input: DeliveryCheckInput) => Object.values(checkDeliveries(input).violations).flat();

describe('the crash suite checker', () => {
  test('a kill and resume from the durable checkpoint: two duplicates, within the bound, nothing else', () => {
    const report = checkDeliveries(cleanRun());
    assert.deepEqual(problems(cleanRun()), []);
    assert.equal(report.figures.duplicates, 2);
    assert.equal(report.figures.duplicateBound, 2);
    assert.equal(report.figures.redeliveredBatches, 1);
    assert.deepEqual(report.figures.kills[0]?.shards, ['shard-0']);
    assert.equal(report.figures.kills[0]?.midBatch, true);
  });

  test('a record never delivered is lost', () => {
    const input = cleanRun();
    input.lines = input.lines.filter((line) => !(line.kind === 'record' && line.data === 'a#3'));
    assert.deepEqual(checkDeliveries(input).violations.lost, ['a#3']);
  });

  test('a duplicate without a kill in between is reported', () => {
    const input = cleanRun();
    input.kills = [];
    assert.match(checkDeliveries(input).violations.duplicates.join('\n'), /not killed in between/);
  });

  test('a duplicate of a record a durable checkpoint covered is reported', () => {
    const input = cleanRun();
    input.snapshots.push({ at: input.killAt - 1, shardId: 'shard-0', checkpoint: positionOf('a#2') });
    assert.match(checkDeliveries(input).violations.duplicates.join('\n'), /covered by checkpoint/);
  });

  test('a duplicate from a batch before the last one is reported', () => {
    const input = cleanRun();
    const at = input.lines.at(-1)!.at;
    input.lines.push(...stamp([record(2, '2/1', '2:1', 'a#1')]).map((line) => ({ ...line, at: at + 1 })));
    const found = checkDeliveries(input).violations;
    assert.match(found.duplicates.join('\n'), /not the last batch/);
    assert.match(found.checkpoints.join('\n'), /at or before its start/);
  });

  test('a key delivered out of order within a run is reported', () => {
    const input = cleanRun(['a#3', 'a#2', 'b#1']);
    assert.match(checkDeliveries(input).violations.order.join('\n'), /a#2 right after a#3/);
  });

  test('a child shard delivering before its parent is done is reported', () => {
    const input = cleanRun();
    input.lines = stamp([
      { kind: 'initialize', pid: 2, shardId: 'shard-1', instance: '2/2', startingPosition: 'TRIM_HORIZON' },
      ...batch(2, '2/2', '2:0', ['c#0'], true, 'shard-1'),
      ...input.lines,
    ]);
    input.parents = new Map([['shard-1', ['shard-0']]]);
    assert.match(
      checkDeliveries(input).violations.order.join('\n'),
      /child shard-1 delivered c#0 before parent shard-0/,
    );
  });
});

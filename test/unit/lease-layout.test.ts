import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  accountOfStreamArn,
  leaseLayoutProblem,
  streamIdentifier,
  type TableLayout,
  temporalKclOwner,
} from '../../src/checkpoint/lease-layout';
import { leaseOwner, shardConsumerWorkflowId } from '../../src/ids';

const empty = (): TableLayout => ({ singleStreamItems: 0, multiStreams: new Map(), singleStreamOwners: [] });
const request = { tableName: 't', applicationName: 'app', streamName: 'orders', multiStream: false };

describe('lease table layouts', () => {
  test("the stream identifier is Java KCL's <account>:<stream>:<creation epoch>, the account read from the ARN", () => {
    assert.equal(accountOfStreamArn('arn:aws:kinesis:us-east-1:000000000000:stream/orders'), '000000000000');
    assert.equal(accountOfStreamArn('arn:aws-cn:kinesis:cn-north-1:123456789012:stream/a.b-c'), '123456789012');
    assert.throws(() => accountOfStreamArn('arn:aws:kinesis:us-east-1:42:stream/orders'), /account id/);
    assert.equal(streamIdentifier('000000000000', 'orders', 1733400000), '000000000000:orders:1733400000');
  });

  test('a temporal-kcl lease owner names its application and stream; other owners name nothing', () => {
    const owner = leaseOwner(shardConsumerWorkflowId('my/app', 'orders', 'shardId-000000000001'), 'run-1');
    assert.deepEqual(temporalKclOwner(owner), { applicationName: 'my/app', streamName: 'orders' });
    assert.equal(temporalKclOwner('ip-10-0-0-1.ec2.internal:4f6c'), undefined);
  });

  test('an empty table suits either layout', () => {
    assert.equal(leaseLayoutProblem(empty(), request), undefined);
    assert.equal(leaseLayoutProblem(empty(), { ...request, multiStream: true }), undefined);
  });

  test('the layouts never mix in one table', () => {
    const single = { ...empty(), singleStreamItems: 2 };
    assert.match(leaseLayoutProblem(single, { ...request, multiStream: true }) ?? '', /holds 2 single-stream lease/);
    const multi = { ...empty(), multiStreams: new Map([['000000000000:payments:1', 4]]) };
    assert.match(leaseLayoutProblem(multi, request) ?? '', /holds multi-stream leases \(of payments\)/);
    assert.equal(leaseLayoutProblem(multi, { ...request, multiStream: true }), undefined);
  });

  test('a single-stream table held by another stream (or application) is refused; by the same one, or nobody, it is not', () => {
    const held = (applicationName: string, streamName: string): TableLayout => ({
      ...empty(),
      singleStreamItems: 1,
      singleStreamOwners: [{ applicationName, streamName }],
    });
    assert.match(leaseLayoutProblem(held('app', 'payments'), request) ?? '', /held by the consumer of stream payments/);
    assert.match(leaseLayoutProblem(held('other', 'orders'), request) ?? '', /application other/);
    assert.equal(leaseLayoutProblem(held('app', 'orders'), request), undefined);
    assert.equal(leaseLayoutProblem({ ...empty(), singleStreamItems: 3 }, request), undefined);
  });
});

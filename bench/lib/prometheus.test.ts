/**
 * The benchmark's Prometheus text parser, on lines as the Temporal dev server writes them and on the format's corners.
 * Needs no stack: `node --import tsx --test bench/lib/prometheus.test.ts`.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { counterDelta, parsePrometheusText, sumBy } from './prometheus';

const SCRAPE = `# HELP action action counter
# TYPE action counter
action{action_type="grpc_StartWorkflowExecution",namespace="temporal_system",operation="StartWorkflowExecution",service_name="frontend"} 2
action{action_type="command_StartTimer",namespace="default",operation="RespondWorkflowTaskCompleted",service_name="frontend"} 5
action{action_type="command_StartTimer",namespace="default",operation="PollWorkflowTaskQueue",service_name="frontend"} 1e+01
action{action_type="command_ScheduleActivityTask",namespace="default",operation="RespondWorkflowTaskCompleted",service_name="frontend"} 7
acquire_shards_latency_bucket{operation="ShardController",service_name="history",le="+Inf"} 1
actions_total{namespace="default"} 100
`;

describe('parsePrometheusText', () => {
  test('reads names, labels and values, and skips comments', () => {
    const samples = parsePrometheusText(SCRAPE);
    assert.equal(samples.length, 6);
    assert.deepEqual(samples[1], {
      name: 'action',
      labels: {
        action_type: 'command_StartTimer',
        namespace: 'default',
        operation: 'RespondWorkflowTaskCompleted',
        service_name: 'frontend',
      },
      value: 5,
    });
    assert.equal(samples[2]!.value, 10);
    assert.equal(samples[4]!.labels.le, '+Inf');
  });

  test('handles escapes, spaces, a trailing comma, a timestamp, no labels and special values', () => {
    const samples = parsePrometheusText(
      'm{ a = "x\\"y\\\\z" , b="line\\nbreak",} 3 1700000000000\nplain 4\nn{} NaN\ni +Inf\nj -Inf\n',
    );
    assert.deepEqual(samples[0], { name: 'm', labels: { a: 'x"y\\z', b: 'line\nbreak' }, value: 3 });
    assert.deepEqual(samples[1], { name: 'plain', labels: {}, value: 4 });
    assert.ok(Number.isNaN(samples[2]!.value));
    assert.equal(samples[3]!.value, Number.POSITIVE_INFINITY);
    assert.equal(samples[4]!.value, Number.NEGATIVE_INFINITY);
  });

  test('names the malformed line', () => {
    assert.throws(() => parsePrometheusText('ok 1\naction{a="x} 1'), /metrics line 2 .*unterminated value of label a/);
    assert.throws(() => parsePrometheusText('action{a="x"} twelve'), /metrics line 1 .*not a sample value/);
  });
});

describe('sumBy', () => {
  test('sums the action counter of one namespace by action_type, and nothing of other metrics or namespaces', () => {
    const sums = sumBy(parsePrometheusText(SCRAPE), 'action', 'action_type', { namespace: 'default' });
    assert.deepEqual(sums, { command_StartTimer: 15, command_ScheduleActivityTask: 7 });
  });
});

describe('counterDelta', () => {
  test('keeps the keys that changed, new ones included', () => {
    assert.deepEqual(counterDelta({ a: 1, b: 2 }, { a: 3, b: 2, c: 1 }), { a: 2, c: 1 });
  });
});

/**
 * The markdown of the fan-out measurement (issue 13): polling and enhanced fan-out on the same stack, side by side.
 */
import type { FanOutResult } from '../fan-out';
import { table } from './report-actions';

const times = (value: number | null) => (value === null ? '–' : `${value}×`);
const dash = (value: number | null) => (value === null ? '–' : value);

export function renderFanOut(result: FanOutResult): string[] {
  const { latency, throughput, actions } = result;
  return [
    '## 9. Enhanced fan-out vs polling',
    '',
    `Stack of its own: ${result.stack}. The fan-out figures are this dev front + kinesis-local, **not AWS** (AWS quotes ~70 ms put → push): the front reads kinesis-local with GetRecords (every 100 ms when the shard has nothing new) and pushes what it gets, and does not enforce 2 MiB/s per consumer-shard. Polling reads through the same front (forwarded to kinesis-local). One worker process, stream consumers with default options but \`execution\` / \`retrieval\`. Ratios are this run's, against polling \`per-batch\`.`,
    '',
    `Latency: the three applications on one one-shard stream at once, ${latency.ratePerSec} PutRecord/s of ${latency.recordBytes} B for ${latency.seconds} s after a warm-up; put → processRecords of every record.`,
    '',
    table(
      ['mode', 'records', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'p50 vs per-batch', 'p99 vs per-batch'],
      latency.modes.map((m) => [
        m.mode,
        m.samples,
        m.p50Ms,
        m.p90Ms,
        m.p99Ms,
        m.maxMs,
        times(m.p50VsPerBatch),
        times(m.p99VsPerBatch),
      ]),
    ),
    '',
    `Throughput per shard: a one-shard stream pre-filled with ${throughput.records} records of ${throughput.recordBytes} B, read from TRIM_HORIZON by each mode in turn (a new application each), at most ${throughput.maxRecords} records a read (polling \`maxRecords\`) or a pushed event (the front's \`maxRecordsPerEvent\`): from the start request (start-up included; for fan-out also RegisterStreamConsumer, waiting for ACTIVE and the subscription) and after the first batch (the rate the shard streams at). Polling is bound by kinesis-local's reads (~1–2.5 MB/s on this machine). The fan-out path (the front reads kinesis-local one GetRecords at a time and pushes each page as an event; the SDK decodes it; the window delivers it) is what this row measures, not AWS's push: where it loses time against polling was not isolated. AWS serves 2 MiB/s per shard to polling (shared by every application) and 2 MiB/s per fan-out consumer and shard.`,
    '',
    table(
      [
        'mode',
        'records',
        'batches',
        'first batch ms',
        'total ms',
        'rec/s',
        'KiB/s',
        'rec/s after 1st batch',
        'KiB/s after 1st batch',
        'vs per-batch',
      ],
      throughput.modes.map((m) => [
        m.mode,
        m.records,
        m.batches,
        m.firstBatchMs,
        m.elapsedMs,
        m.recordsPerSec,
        m.kibPerSec,
        dash(m.steadyRecordsPerSec),
        dash(m.steadyKibPerSec),
        times(m.steadyVsPerBatch),
      ]),
    ),
    '',
    `Temporal actions per shard-second: the dev server's \`action\` counter (this stack's namespace, only this consumer running), a two-shard stream read from LATEST by each mode in turn: idle, then busy at ${actions.cases.find((c) => c.kind === 'busy')?.ratePerShard ?? '?'} records/s per shard.${actions.steadyIdle ? '' : ' **The idle window starts before the consumers read once per maxIdleWaitMs (30 s; about 60 s after the start, the first window of a windowed consumer included), so idle figures are above the steady state.**'}`,
    '',
    table(
      [
        'mode',
        'case',
        'warm-up s',
        'window s',
        'actions',
        'per shard-second',
        'vs per-batch',
        'delivered rec/s/shard',
        'by type',
      ],
      actions.cases.map((c) => [
        c.mode,
        c.kind,
        c.warmUpSeconds,
        c.windowSeconds,
        c.actions,
        c.actionsPerShardSecond,
        times(c.vsPerBatch),
        `${c.deliveredPerSecPerShard}${c.keepsUp ? '' : ' (**did not keep up**)'}`,
        Object.entries(c.actionsPerShardSecondByType)
          .map(([type, value]) => `${type.replace(/^command_/, '')} ${value}`)
          .join(', ') || '–',
      ]),
    ),
    '',
  ];
}

/**
 * The markdown of the actions and cpu measurements (issue 9): actions per shard-second by case and execution with the
 * issue's targets met or not, and CPU-seconds per million records next to the Go original's.
 */
import {
  ACTION_TARGETS,
  type ActionsCase,
  type ActionsResult,
  NAMESPACE_ACTIONS_PER_SECOND,
  SECONDS_PER_MONTH,
} from '../actions';
import type { CpuResult } from '../cpu';
import { round } from './stats';

/** A markdown table. */
export function table(header: string[], rows: (string | number)[][]): string {
  return [
    `| ${header.join(' | ')} |`,
    `|${header.map(() => '---').join('|')}|`,
    ...rows.map((row) => `| ${row.join(' | ')} |`),
  ].join('\n');
}

const dash = (value: number | null | undefined) => (value === null || value === undefined ? '–' : String(value));
const metText = (met: boolean) => (met ? 'met' : '**not met**');

/** `command_ScheduleActivityTask 0.52, command_StartTimer 0.25, …` without the `command_` prefixes. */
function byType(c: ActionsCase): string {
  return Object.entries(c.actionsPerShardSecondByType ?? {})
    .map(([type, value]) => `${type.replace(/^command_/, '')} ${value}`)
    .join(', ');
}

export function renderActions(result: ActionsResult): string[] {
  const rows = result.cases.map((c) => {
    const rate =
      c.ratePerShard === 0
        ? '0'
        : `${c.ratePerShard}${c.userRecordsPerKinesisRecord > 1 ? ` (KPL ×${c.userRecordsPerKinesisRecord})` : ''}`;
    if (!c.available) {
      return [
        c.execution,
        c.name,
        c.shards,
        rate,
        `_${c.unavailable ?? 'not available'}_`,
        '',
        '',
        '',
        '',
        '',
        '',
        '',
        '',
        '',
      ];
    }
    const target = c.target!;
    return [
      c.execution,
      c.name,
      c.shards,
      rate,
      `**${c.actionsPerShardSecond}**`,
      c.actionsPerShardSecondShardConsumersOnly ?? '–',
      byType(c),
      dash(c.actionsPer1000Records),
      dash(c.actionsPerBatch),
      (c.actionsPerShardMonth ?? 0).toLocaleString('en-US'),
      dash(c.shardsPerNamespace),
      `${c.producedPerSecPerShard} / ${c.deliveredPerSecPerShard} / ${dash(c.lagMeanMs)}` +
        (c.keepsUp ? '' : ' (**did not keep up**)') +
        (c.producerLimited ? ' (producer-limited)' : ''),
      `${c.windowSeconds} s (${c.actions} actions)`,
      `${target.text}: ${dash(target.value)} ${metText(target.met)} (shard consumers only: ${dash(target.valueShardConsumersOnly)} ${metText(target.metShardConsumersOnly)})`,
    ];
  });
  const scale = result.cases.filter((c) => c.kind === 'scale' && c.available);
  return [
    '## 6. Temporal actions per shard',
    '',
    `The Temporal server's own \`action\` counter (Prometheus, \`temporal server start-dev --metrics-port\`; the counter Temporal documents for estimating Temporal Cloud actions), summed over a window after a warm-up, namespace \`${result.namespace}\`. Stream consumer started through the client (default options, TRIM_HORIZON), one worker process, ${result.emulator}; records of ${result.cases[0]?.recordBytes ?? '?'} B; the no-op processor checkpoints every batch. Busy at 2,000 user records/s per shard puts KPL aggregates (a real shard takes at most 1,000 Kinesis records/s). Every action of the namespace counts, the stream consumer's too; "shard consumers only" leaves out the stream consumer's, estimated from its history (one per command event or signal in the window). The producer puts every 100 ms. A case that did not keep up (delivered < 90% of produced, or lag mean > 5 s) read bigger, fewer batches than a worker that keeps up would: its actions understate the cost; producer-limited = the producer reached < 90% of its rate (a loaded machine). Per month: × ${SECONDS_PER_MONTH.toLocaleString('en-US')} s. Shards per namespace: how many such shards fit in ${NAMESPACE_ACTIONS_PER_SECOND} actions/s (Temporal Cloud's default namespace limit).`,
    '',
    table(
      [
        'execution',
        'case',
        'shards',
        'user rec/s per shard',
        '**actions per shard-second**',
        'shard consumers only',
        'by action type (per shard-second)',
        'per 1,000 records',
        'per batch',
        'per shard per month',
        `shards per ${NAMESPACE_ACTIONS_PER_SECOND} actions/s`,
        'produced / delivered rec/s per shard / lag mean ms',
        'window',
        'target (issue 9)',
      ],
      rows,
    ),
    '',
    `Targets: idle ≤ ${ACTION_TARGETS.idleActionsPerShardSecond} actions per shard-second in both executions; busy ≤ ${ACTION_TARGETS.windowedBusyActionsPerShardSecond} actions per shard-second in \`windowed\`; ≤ ${ACTION_TARGETS.perBatchActionsPerBatch} actions per batch in \`per-batch\`.` +
      (scale.length > 0
        ? ` Scale: ${scale.map((c) => `${c.execution}: ${c.shards} shards on one worker cost ${round(c.actions! / c.windowSeconds!, 1)} actions/s in total, so about **${dash(c.shardsPerNamespace)} shards** fit in a ${NAMESPACE_ACTIONS_PER_SECOND} actions/s namespace${c.keepsUp ? '' : ' (but the worker did not keep up: a worker that does reads more, smaller batches and costs more)'}`).join('; ')}.`
        : ''),
    '',
  ];
}

export function renderCpu(result: CpuResult): string[] {
  const rows: (string | number)[][] = result.cases.map((c) =>
    c.available
      ? [
          c.execution,
          c.records ?? '–',
          c.batches ?? '–',
          c.recordsPerSec ?? '–',
          `**${c.workerCpuSecondsPerMillion}**`,
          dash(c.temporalCpuSecondsPerMillion),
          dash(c.totalCpuSecondsPerMillion),
          c.target ? `${c.target.text}: ${metText(c.target.met)}` : '–',
        ]
      : [c.execution, `_${c.unavailable ?? 'not available'}_`, '', '', '', '', '', ''],
  );
  rows.push([
    '_reference: the Go original_',
    '300000',
    '',
    '',
    `${result.goOriginalCpuSecondsPerMillion} (its one process)`,
    '',
    '',
    'measured by the issue\u2019s author on this machine type, not in this run',
  ]);
  return [
    '## 7. CPU per record',
    '',
    `A single-shard drain of ${result.records.toLocaleString('en-US')} pre-filled ${result.recordBytes} B records from TRIM_HORIZON (${result.emulator}), shard consumer with default options and a no-op processor that checkpoints every batch, after a warm-up drain of ${result.warmUpRecords.toLocaleString('en-US')} records on the same worker. CPU seconds (user + system, /proc/<pid>/stat) from the start request to the last record processed, per million records.`,
    '',
    table(
      [
        'execution',
        'records',
        'batches',
        'rec/s',
        '**worker CPU-s per million records**',
        'Temporal server CPU-s per million',
        'worker + server',
        'target (issue 9)',
      ],
      rows,
    ),
    '',
  ];
}

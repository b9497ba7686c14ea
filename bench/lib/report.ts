/**
 * The benchmark's report: machine info, every measurement's figures (JSON) and a markdown rendering of them.
 */
import { cpus, loadavg } from 'node:os';
import type { ActionsResult } from '../actions';
import type { CostResult } from '../cost';
import type { CpuResult } from '../cpu';
import type { FailoverResult } from '../failover';
import type { FanOutResult } from '../fan-out';
import type { LatencyResult } from '../latency';
import type { ScalePoint } from '../scale';
import type { CrashFailoverResult, ShareDrainResult, StartupResult } from '../scale-out';
import type { ThroughputResult } from '../throughput';
import { renderActions, renderCpu } from './report-actions';
import { renderFanOut } from './report-fan-out';
import { renderCrashFailover, renderShareDrain, renderStartup } from './report-scale-out';

export interface MachineInfo {
  cores: number;
  cpuModel: string;
  node: string;
  platform: string;
  /** 1, 5 and 15 minute load averages when the run started. */
  loadAverage: number[];
  loadAverageAtEnd?: number[];
}

export interface BenchReport {
  startedAt: string;
  mode: 'quick' | 'full';
  durationSeconds?: number;
  machine: MachineInfo;
  settings: Record<string, unknown>;
  throughput?: ThroughputResult[];
  scale?: ScalePoint[];
  latency?: LatencyResult[];
  failover?: FailoverResult[];
  cost?: CostResult;
  actions?: ActionsResult;
  cpu?: CpuResult;
  startup?: StartupResult;
  'crash-failover'?: CrashFailoverResult;
  'share-drain'?: ShareDrainResult;
  'fan-out'?: FanOutResult;
  failures: { measurement: string; error: string }[];
}

export function machineInfo(): MachineInfo {
  const list = cpus();
  return {
    cores: list.length,
    cpuModel: list[0]?.model.trim() ?? 'unknown',
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    loadAverage: loadavg().map((value) => Math.round(value * 100) / 100),
  };
}

const yes = (value: boolean) => (value ? 'yes' : '**no**');

function table(header: string[], rows: (string | number)[][]): string {
  return [
    `| ${header.join(' | ')} |`,
    `|${header.map(() => '---').join('|')}|`,
    ...rows.map((row) => `| ${row.join(' | ')} |`),
  ].join('\n');
}

export function renderMarkdown(report: BenchReport): string {
  const { machine } = report;
  const out: string[] = [
    `# temporal-kcl benchmark (${report.mode} run)`,
    '',
    `- started ${report.startedAt}, took ${report.durationSeconds ?? '?'} s`,
    `- machine: ${machine.cores} cores, ${machine.cpuModel}, ${machine.platform}, Node ${machine.node}`,
    `- load average (1/5/15 min) at start ${machine.loadAverage.join(' / ')}, at end ${(machine.loadAverageAtEnd ?? []).join(' / ')}` +
      (machine.loadAverage[0]! >= 1 ? ' — **the machine was shared and loaded: figures are noisy**' : ''),
    ...Object.entries(report.settings)
      .filter(([key]) => key !== 'logDir')
      .map(([key, value]) => `- ${key}: ${String(value)}`),
    '',
  ];

  if (report.throughput) {
    out.push(
      '## 1. Throughput per shard',
      '',
      'Pre-filled one-shard stream, read from TRIM_HORIZON until every record is processed. temporal-kcl: getRecords → de-aggregate → no-op processor → checkpoint every batch, read pacing off (`minTimeBetweenReadsMs: 0`: the emulator has no 5 reads/s limit and the raw loop is not paced), timed from the start request; raw: GetShardIterator + GetRecords + deaggregateRecords in a loop with the same client. Both in their own processes, interleaved, fastest of the repetitions. maxRecords 10000, or what fits the 10 MiB real Kinesis returns at most per call (kinesalite has no such cap). MiB = 2^20 bytes of user-record data.',
      '',
      table(
        [
          'case',
          'emulator',
          'records',
          'maxRecords',
          'raw rec/s',
          'raw MiB/s',
          'kcl rec/s (prefetch)',
          'kcl MiB/s',
          '**ratio**',
          'kcl rec/s (no prefetch)',
          'ratio (no prefetch)',
          'ratio after 1st batch (on / off)',
          'first batch ms (raw / kcl)',
          '≥ 2 MiB/s (Kinesis shard)',
        ],
        report.throughput.map((t) => [
          t.name,
          t.emulator,
          t.userRecords,
          t.maxRecords,
          t.raw.best.recordsPerSec,
          t.raw.best.mibPerSec,
          t.prefetchOn.best.recordsPerSec,
          t.prefetchOn.best.mibPerSec,
          `**${t.throughputRatio}×**`,
          t.prefetchOff.best.recordsPerSec,
          `${t.throughputRatioPrefetchOff}×`,
          `${t.steadyStateRatio}× / ${t.steadyStateRatioPrefetchOff}×`,
          `${t.raw.best.firstBatchMs} / ${t.prefetchOn.firstBatchMs}`,
          yes(t.keepsUpWithKinesisShard),
        ]),
      ),
      '',
      `Target ≥ 0.8× with prefetch: ${
        report.throughput.every((t) => t.throughputRatio >= 0.8)
          ? 'met'
          : '**missed** for ' +
            report.throughput
              .filter((t) => t.throughputRatio < 0.8)
              .map((t) => t.name)
              .join(', ')
      }. ` +
        `CPU seconds per MiB (raw / temporal-kcl worker): ${report.throughput.map((t) => `${t.name} ${t.raw.best.cpuSecondsPerMiB} / ${t.prefetchOn.best.cpuSecondsPerMiB}`).join('; ')}.`,
      '',
      ...report.throughput
        .filter((t) => t.rawWithRangeCheck)
        .map(
          (t) =>
            `${t.name}: temporal-kcl checks every user record's hash key against the shard's range (as Java KCL does; the raw loop does not). ` +
            `A raw loop that makes the same check reads ${t.rawWithRangeCheck!.best.recordsPerSec} rec/s: temporal-kcl ÷ that loop = **${t.throughputRatioVsRangeCheckedRaw}×**.`,
        ),
      '',
    );
  }

  if (report.scale) {
    out.push(
      '## 2. Scale: shards on one worker process',
      '',
      `A producer puts ${report.scale[0]?.targetRatePerShard ?? 100} records/s of ${report.scale[0]?.recordBytes ?? 1024} B on every shard for ${report.scale[0]?.productionSeconds ?? '?'} s; the stream consumer (default options) runs on one worker process; kinesalite runs in a process of its own here. Keeps up = every record delivered, the last within 5 s of the end of production. Producer-limited = the producer reached less than 90% of the target rate (the emulator or the machine is the limit, not the worker). CPU from the start of production until every record was delivered (or the wait for them gave up), lag up to the last delivery; peak RSS since the worker started.`,
      '',
      table(
        [
          'shards',
          'emulator',
          'produced rec/s',
          'delivered',
          'rec/s',
          'MiB/s',
          'worker CPU s',
          'worker % of a core',
          'worker peak RSS MiB',
          'Temporal server / emulator % of a core',
          'lag mean / max ms',
          'max lag 1st / 2nd half ms',
          'drain ms',
          'keeps up',
        ],
        report.scale.map((s) => [
          s.shards,
          s.emulator,
          s.producedPerSec,
          `${s.delivered}/${s.produced}`,
          s.recordsPerSec,
          s.mibPerSec,
          s.workerCpuSeconds,
          s.workerCpuPercentOfOneCore,
          s.workerPeakRssMiB,
          `${s.temporalCpuPercentOfOneCore} / ${s.emulatorCpuPercentOfOneCore}`,
          `${s.lagMeanMs} / ${s.lagMaxMs}`,
          `${s.lagMaxFirstHalfMs} / ${s.lagMaxSecondHalfMs}`,
          s.drainMs,
          `${yes(s.keepsUp)}${s.producerLimited ? ' (producer-limited)' : ''}`,
        ]),
      ),
      '',
    );
  }

  if (report.latency) {
    out.push(
      '## 3. Latency: put → processRecords',
      '',
      'One shard, a steady low rate, worker in the benchmark process (one clock: put sent → processRecords called). GetRecords/s: reads of the shard per second while producing (real Kinesis allows 5 per shard, shared by all its consumers).',
      '',
      table(
        [
          'settings',
          'emulator',
          'rate/s',
          'samples',
          'p50 ms',
          'p90 ms',
          'p99 ms',
          'max ms',
          'put p50 ms',
          'GetRecords/s',
        ],
        report.latency.map((l) => [
          l.name,
          l.emulator,
          l.ratePerSec,
          l.samples,
          l.p50Ms,
          l.p90Ms,
          l.p99Ms,
          l.maxMs,
          l.putP50Ms,
          l.getRecordsPerSec,
        ]),
      ),
      '',
    );
  }

  if (report.failover) {
    out.push(
      '## 4. Failover: SIGKILL the worker holding a shard',
      '',
      `One shard under steady load (${report.failover[0]?.ratePerSec ?? 20} records/s), two worker processes; time from SIGKILL to the shard's next batch processed by the other worker; a replacement worker is started after each trial. Target p50 < 3 s. A worker that takes a shard over first replays the current run's history (the replay column), so the long-history rows kill late in a run. The timeouts each trial waited for are in latest.json (trialDetails).`,
      '',
      table(
        [
          'settings',
          'scenario',
          'heartbeatTimeoutMs',
          'workerScheduleToStartTimeoutMs',
          'stickyQueueScheduleToStartTimeoutMs',
          'workflowTaskTimeout',
          'maxBatchesPerRun',
          'trials',
          'p50 ms',
          'max ms',
          'trials ms',
          'history events at kill',
          'replay ms',
        ],
        report.failover.map((f) => [
          f.settings.name,
          f.scenario,
          f.settings.heartbeatTimeoutMs,
          f.settings.workerScheduleToStartTimeoutMs,
          f.settings.stickyQueueScheduleToStartTimeoutMs,
          f.settings.workflowTaskTimeout,
          f.maxBatchesPerRun,
          f.trials,
          `${f.p50Ms}${f.p50Ms < 3_000 ? '' : ' (**≥ 3 s**)'}`,
          f.maxMs,
          f.failoverMs.join(', '),
          f.trialDetails.map((t) => t.historyEventsAtKill).join(', '),
          f.trialDetails.map((t) => (Number.isFinite(t.replayMs) ? t.replayMs : '?')).join(', '),
        ]),
      ),
      '',
    );
  }

  if (report.cost) {
    const { cost } = report;
    out.push(
      '## 5. Temporal and DynamoDB cost per batch',
      '',
      'Steady state: between the first and the last processRecords of a run (start-up and stop excluded). Whole run: everything, divided by the batches.',
      '',
      table(
        [
          'record size',
          'records',
          'maxRecords',
          'batches',
          'history events/batch',
          'history bytes/batch',
          'workflow tasks/batch',
          'checkpoint markers/batch',
          'whole run: events / bytes / WFTs per batch',
          'DynamoDB writes/batch',
          'GetRecords/batch',
        ],
        cost.cases.map((c) => [
          `${c.recordBytes} B`,
          c.records,
          c.maxRecords,
          c.batches,
          c.history.steady.eventsPerBatch.toFixed(1),
          c.history.steady.bytesPerBatch.toFixed(0),
          c.history.steady.workflowTasksPerBatch.toFixed(2),
          c.history.steady.markersPerBatch.toFixed(2),
          `${c.perBatch.historyEvents} / ${c.perBatch.historyBytes} / ${c.perBatch.workflowTasks}`,
          c.perBatch.dynamoDbWrites,
          c.perBatch.getRecordsCalls,
        ]),
      ),
      '',
      `History bytes per batch, 10 KB ÷ 100 B records: ${cost.bytesPerBatchRatio}× (1 = independent of record size); record data found in history: ${cost.recordDataInHistory ? '**yes**' : 'no'}.`,
      '',
    );
  }

  if (report.actions) out.push(...renderActions(report.actions));
  if (report.cpu) out.push(...renderCpu(report.cpu));
  if (report.startup) out.push(...renderStartup(report.startup));
  if (report['crash-failover']) out.push(...renderCrashFailover(report['crash-failover']));
  if (report['share-drain']) out.push(...renderShareDrain(report['share-drain']));
  if (report['fan-out']) out.push(...renderFanOut(report['fan-out']));

  if (report.failures.length > 0) {
    out.push('## Failures', '', ...report.failures.map((f) => `- ${f.measurement}: \`${f.error.split('\n')[0]}\``), '');
  }
  return `${out.join('\n')}\n`;
}

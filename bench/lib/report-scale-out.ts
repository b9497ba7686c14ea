/**
 * The markdown of the scale-out measurements (issue 10): worker start-up, and failover under repeated crashes.
 */
import type { CrashFailoverResult, ShareDrainResult, StartupResult } from '../scale-out';
import { table } from './report-actions';

/** `shardId-000000000003` → `3`. */
const shortId = (shardId: string) => shardId.replace(/^shardId-0*(?=\d)/, '');

const target = (value: number, limit: number) => `${value}${value <= limit ? '' : ` (**> ${limit}**)`}`;

export function renderStartup(startup: StartupResult): string[] {
  const rows: (string | number)[][] = [];
  for (const m of startup.modes) {
    const row = (
      what: string,
      key: 'activityPollMs' | 'workflowPollMs' | 'readyLineMs',
      p50: string | number,
      maxMs: number,
    ) => [m.mode, what, p50, maxMs, m.runs.map((r) => r[key]).join(', '), m.warmUp[key]];
    rows.push(
      row('activity poller', 'activityPollMs', target(m.activityPoll.p50Ms, startup.targetMs), m.activityPoll.maxMs),
      row('workflow poller', 'workflowPollMs', m.workflowPoll.p50Ms, m.workflowPoll.maxMs),
      row('`ready` line', 'readyLineMs', m.readyLine.p50Ms, m.readyLine.maxMs),
    );
  }
  return [
    '## 8a. Worker start-up',
    '',
    `\`temporal-kcl worker\` (checkout: ${startup.checkout}) spawned ${startup.modes[0]?.runs.length ?? 0} times per mode after a warm-up: compiled (${startup.modes.find((m) => m.mode === 'compiled')?.command ?? '–'}, as the package and the image run it; built first, ${startup.buildMs} ms) and from source (${startup.modes.find((m) => m.mode === 'source')?.command ?? '–'}). Time from spawn until the worker's identity shows among the shared task queue's pollers (DescribeTaskQueue), for activities (it can take shards) and for workflows, and until its \`ready\` line. Target: activity poll ≤ ${startup.targetMs} ms.`,
    '',
    table(['mode', '', 'p50 ms', 'max ms', 'runs ms', 'warm-up ms'], rows),
    '',
  ];
}

export function renderCrashFailover(crash: CrashFailoverResult): string[] {
  return [
    '## 8b. Failover under repeated crashes',
    '',
    `${crash.workers} worker processes, ${crash.shards} shards at ${crash.ratePerShard} records/s each, library defaults; ${crash.kills.length} SIGKILLs (process group) 5–8 s apart (seed ${crash.seed}) of a worker holding shards, each followed at once by a restart. Per kill, the time from the kill to the next delivery of each shard whose last delivery was on the killed worker. Target: max ≤ ${crash.targetMs} ms. Workflow task timeouts seen: ${crash.workflowTaskTimeouts}.`,
    '',
    `**p50 ${crash.p50Ms} ms, max ${target(crash.maxMs, crash.targetMs)} ms** over ${crash.failoverMs.length} shard failovers.`,
    '',
    table(
      [
        'kill',
        'at s',
        'shard: failover ms',
        'timeouts waited for',
        'replay ms (workflow worker killed)',
        'restart ready ms',
      ],
      crash.kills.map((k, index) => [
        index + 1,
        (k.atMs / 1000).toFixed(1),
        k.shards.map((s) => `${shortId(s.shardId)}: ${s.failoverMs}`).join(', '),
        k.shards
          .filter((s) => s.timeouts.length > 0)
          .map(
            (s) =>
              `${shortId(s.shardId)}: ${s.timeouts.map((t) => `${t.what} ${t.timeoutType} +${t.atMs}`).join(', ')}`,
          )
          .join('; ') || '–',
        k.shards
          .filter((s) => s.killedWorkflowWorker)
          .map((s) => (Number.isFinite(s.replayMs) ? s.replayMs : '?'))
          .join(', ') || '–',
        k.restartReadyMs,
      ]),
    ),
    '',
  ];
}

export function renderShareDrain(r: ShareDrainResult): string[] {
  return [
    '## 8c. A worker joins, a worker drains',
    '',
    `${r.shards} shards at ${r.ratePerShard} records/s each under a stream consumer (placement on), library workers in child processes. A third worker joins two that hold every shard; then a worker holding shards gets SIGTERM (default shutdownGraceTimeMs). Records counted: duplicates = delivered − produced.`,
    '',
    table(
      ['', 'ms'],
      [
        ['join: spawn → ready', r.join.readyMs],
        ['join: spawn → first delivery on the new worker', r.join.firstShardMs],
        [`join: spawn → the new worker delivers its share (${r.join.share} shards)`, r.join.shareMs],
        ['join: spawn → no worker above ⌈S/3⌉ + 1', r.join.balancedMs],
        ['join: spawn → most and fewest shards per worker at most 2 apart', r.join.evenMs],
        [`drain (${r.drain.held} shards): SIGTERM → exit`, r.drain.exitMs],
        ['drain: SIGTERM → every drained shard delivers elsewhere', r.drain.movedMs],
        ['drain: SIGTERM → no worker above ⌈S/2⌉ + 1', r.drain.balancedMs],
      ],
    ),
    '',
    `${r.produced} records produced, ${r.delivered} delivered: **${r.duplicates} duplicates**.`,
    '',
  ];
}

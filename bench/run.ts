/**
 * `npm run bench [-- --quick] [-- --only throughput,scale,latency,failover,cost,actions,cpu,startup,crash-failover,share-drain,fan-out]
 * [-- --temporal dev|cluster]`: measures temporal-kcl on the local stack and writes bench/results/latest.md and latest.json.
 *
 * It starts its own stack (Temporal dev server, headless, or with `--temporal cluster` a real Temporal cluster: four
 * services on PostgreSQL, see src/dev/cluster.ts; kinesalite and dynalite in this process) and its own worker
 * processes, stops all of them whatever happens (also on Ctrl-C), and exits non-zero if a measurement fails.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { type DevStack, startDevStack } from '../src/dev/dev-stack';
import { getFreePort } from '../src/dev/net';
import { workflowBundle } from '../test/helpers/bundle';
import { measureActions } from './actions';
import { measureCost } from './cost';
import { measureCpu } from './cpu';
import { measureFailover } from './failover';
import { measureFanOut } from './fan-out';
import { measureLatency } from './latency';
import { killAllChildren } from './lib/children';
import { type BenchContext, createBenchContext } from './lib/context';
import { type Execution, parseExecutions } from './lib/executions';
import { machineInfo, type BenchReport, renderMarkdown } from './lib/report';
import { measureScale } from './scale';
import { measureCrashFailover, measureShareDrain, measureStartup } from './scale-out';
import { measureThroughput } from './throughput';

const MEASUREMENTS = [
  'throughput',
  'scale',
  'latency',
  'failover',
  'cost',
  'actions',
  'cpu',
  'startup',
  'crash-failover',
  'share-drain',
  'fan-out',
] as const;
type Measurement = (typeof MEASUREMENTS)[number];
const TEMPORAL_TARGETS = ['dev', 'cluster'] as const;
type TemporalTarget = (typeof TEMPORAL_TARGETS)[number];

interface Args {
  quick: boolean;
  cases?: RegExp;
  repetitions?: number;
  scalePoints?: number[];
  failoverTrials?: number;
  failoverSets?: string[];
  executions?: Execution[];
  crashKills?: number;
  only: Measurement[];
  outDir: string;
  temporal: TemporalTarget;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { quick: false, only: [...MEASUREMENTS], outDir: resolve(__dirname, 'results'), temporal: 'dev' };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--quick') args.quick = true;
    else if (arg === '--only') {
      const list = (argv[++i] ?? '').split(',').filter(Boolean);
      const unknown = list.filter((name) => !(MEASUREMENTS as readonly string[]).includes(name));
      if (unknown.length > 0 || list.length === 0) {
        throw new Error(`--only takes a comma-separated list of ${MEASUREMENTS.join(', ')}; got '${argv[i] ?? ''}'`);
      }
      args.only = list as Measurement[];
    } else if (arg === '--out') args.outDir = resolve(argv[++i] ?? '');
    else if (arg === '--temporal') {
      const target = argv[++i] ?? '';
      if (!(TEMPORAL_TARGETS as readonly string[]).includes(target)) {
        throw new Error(`--temporal takes ${TEMPORAL_TARGETS.join(' or ')}; got '${target}'`);
      }
      args.temporal = target as TemporalTarget;
    } else if (arg === '--cases') args.cases = new RegExp(argv[++i] ?? '', 'i');
    else if (arg === '--failover-sets') args.failoverSets = (argv[++i] ?? '').split(',').filter(Boolean);
    else if (arg === '--executions') args.executions = parseExecutions(argv[++i] ?? '');
    else if (arg === '--crash-kills') {
      args.crashKills = Number(argv[++i]);
      if (!Number.isInteger(args.crashKills) || args.crashKills < 1) {
        throw new Error('--crash-kills takes a whole number >= 1');
      }
    } else if (arg === '--failover-trials') {
      args.failoverTrials = Number(argv[++i]);
      if (!Number.isInteger(args.failoverTrials) || args.failoverTrials < 1) {
        throw new Error('--failover-trials takes a whole number >= 1');
      }
    } else if (arg === '--scale-points') {
      args.scalePoints = (argv[++i] ?? '').split(',').map(Number);
      if (!args.scalePoints.every((n) => Number.isInteger(n) && n >= 1)) {
        throw new Error('--scale-points takes shard counts, e.g. 1,4,16,64');
      }
    } else if (arg === '--repetitions') {
      args.repetitions = Number(argv[++i]);
      if (!Number.isInteger(args.repetitions) || args.repetitions < 1) {
        throw new Error('--repetitions takes a whole number >= 1');
      }
    } else if (arg === '--help' || arg === '-h') {
      console.log(
        'usage: npm run bench -- [--quick] [--only throughput,scale,latency,failover,cost,actions,cpu,startup,crash-failover,share-drain,\n' +
          '                        fan-out]\n' +
          '                        [--out dir]\n' +
          '  --quick  smaller record counts, fewer repetitions, trials and scale points (a smoke check of a few minutes)\n' +
          '  --only   run only these measurements\n' +
          '  --out    where latest.md and latest.json go (default bench/results)\n' +
          '  --temporal dev|cluster  the Temporal CLI dev server (default), or a real cluster: frontend, history,\n' +
          '                         matching and worker as separate processes on PostgreSQL (npm run cluster)\n' +
          '  --cases <regex>        only the throughput cases whose name matches (debugging)\n' +
          '  --repetitions <n>      throughput repetitions (default 3, quick 1)\n' +
          '  --scale-points <list>  shard counts of the scale measurement (default 1,4,16,64; quick 1,8)\n' +
          '  --failover-trials <n>  failover trials per settings (default 6, quick 2)\n' +
          '  --failover-sets <list> failover settings by name: library defaults, relaxed, aggressive, fast, timeouts only,\n' +
          '                         conservative, long-history (default: library defaults,relaxed, and in a full run\n' +
          '                         long-history)\n' +
          '  --executions <list>    shard consumer executions the actions and cpu measurements run (default\n' +
          '                         per-batch,windowed; one this build does not have is reported as not available)\n' +
          '  --crash-kills <n>      SIGKILLs of the crash-failover measurement (default 10, quick 3)\n' +
          '  fan-out: polling (per-batch, windowed) vs enhanced fan-out on a kinesis-local stack of its own with the dev\n' +
          '           fan-out front (latency, throughput per shard, Temporal actions per shard-second)\n' +
          '  BENCH_STARTUP_CHECKOUT=<dir>: the startup measurement runs the CLI of that checkout (a baseline)',
      );
      process.exit(0);
    } else throw new Error(`unknown argument '${arg}' (try --help)`);
  }
  return args;
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const startedAt = Date.now();
  const log = (line: string) =>
    console.log(`[bench ${((Date.now() - startedAt) / 1000).toFixed(1).padStart(6)}s] ${line}`);
  const machineAtStart = machineInfo();
  log(
    `${args.quick ? 'quick' : 'full'} run: ${args.only.join(', ')}; ${machineAtStart.cores} cores (${machineAtStart.cpuModel}), ` +
      `load average ${machineAtStart.loadAverage.join(' ')}`,
  );
  Runtime.install({ logger: new DefaultLogger('ERROR') });

  let stack: DevStack | undefined;
  let context: BenchContext | undefined;
  let interrupted = false;
  const cleanup = async () => {
    await killAllChildren();
    await context?.close().catch(() => undefined);
    await stack?.stop().catch((error: unknown) => log(`stopping the stack: ${String(error)}`));
  };
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    log(`${signal}: stopping`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const report: BenchReport = {
    startedAt: new Date(startedAt).toISOString(),
    mode: args.quick ? 'quick' : 'full',
    machine: machineAtStart,
    settings: {},
    failures: [],
  };
  try {
    // Bundle once (cached on disk by source fingerprint) before worker processes start, so they do not each bundle.
    const bundled = Date.now();
    await workflowBundle();
    log(`workflow bundle ready in ${Date.now() - bundled} ms`);
    const logDir = mkdtempSync(join(tmpdir(), 'temporal-kcl-bench-'));
    stack = await startDevStack({
      temporal: {
        headless: true,
        // The `action` counter the actions measurement reads (a cluster's services each serve their own metrics).
        ...(args.temporal === 'cluster' ? { cluster: true } : { metricsPort: await getFreePort() }),
        // BENCH_TEMPORAL_DYNAMIC_CONFIG='{"key": value}': dev-server dynamic config, for experiments.
        ...(process.env.BENCH_TEMPORAL_DYNAMIC_CONFIG
          ? { dynamicConfig: JSON.parse(process.env.BENCH_TEMPORAL_DYNAMIC_CONFIG) as Record<string, unknown> }
          : {}),
      },
      kinesis: { emulator: 'kinesalite' },
      logDir,
      log: (line) => log(`[stack] ${line}`),
    });
    context = await createBenchContext(
      stack,
      {
        quick: args.quick,
        ...(args.cases ? { cases: args.cases } : {}),
        ...(args.repetitions ? { repetitions: args.repetitions } : {}),
        ...(args.scalePoints ? { scalePoints: args.scalePoints } : {}),
        ...(args.failoverTrials ? { failoverTrials: args.failoverTrials } : {}),
        ...(args.failoverSets ? { failoverSets: args.failoverSets } : {}),
        ...(args.executions ? { executions: args.executions } : {}),
        ...(args.crashKills ? { crashKills: args.crashKills } : {}),
      },
      log,
    );
    report.settings = {
      kinesisEmulator: `${stack.kinesisEmulator} (in the benchmark process; the scale measurement runs one in a process of its own)`,
      dynamoDbEmulator: 'dynalite (in the benchmark process)',
      temporal:
        args.temporal === 'cluster'
          ? `Temporal cluster (server ${stack.temporal.cluster?.serverVersion}: frontend, history, matching, worker as separate processes; PostgreSQL ${stack.temporal.cluster?.postgres.version}, SQL visibility; headless)`
          : 'Temporal CLI dev server (headless, in-memory SQLite)',
      workers:
        'temporal-kcl workers in child processes (bench/worker-process.ts), library defaults unless a row says otherwise',
      measurements: args.only.join(', '),
      ...(args.cases ? { throughputCases: String(args.cases) } : {}),
      ...(args.repetitions ? { throughputRepetitions: args.repetitions } : {}),
      ...(args.executions ? { executions: args.executions.join(', ') } : {}),
      logDir,
    };
    log(`stack ready (emulator ${stack.kinesisEmulator}); logs in ${logDir}`);

    const runners: Record<Measurement, (context: BenchContext) => Promise<unknown>> = {
      throughput: measureThroughput,
      scale: measureScale,
      latency: measureLatency,
      failover: measureFailover,
      cost: measureCost,
      actions: measureActions,
      cpu: measureCpu,
      startup: measureStartup,
      'crash-failover': measureCrashFailover,
      'share-drain': measureShareDrain,
      'fan-out': measureFanOut,
    };
    for (const name of args.only) {
      const measureStarted = Date.now();
      log(`${name}: starting`);
      try {
        const result = await runners[name](context);
        (report as unknown as Record<string, unknown>)[name] = result;
        log(`${name}: done in ${((Date.now() - measureStarted) / 1000).toFixed(1)} s`);
      } catch (error) {
        const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
        report.failures.push({ measurement: name, error: message });
        log(`${name}: FAILED: ${message}`);
        await killAllChildren();
      }
      if (interrupted) break;
    }
  } catch (error) {
    report.failures.push({
      measurement: 'setup',
      error: error instanceof Error ? (error.stack ?? error.message) : String(error),
    });
    log(`FAILED: ${String(error)}`);
  } finally {
    await cleanup();
  }
  report.durationSeconds = Math.round((Date.now() - startedAt) / 1000);
  report.machine.loadAverageAtEnd = machineInfo().loadAverage;
  mkdirSync(args.outDir, { recursive: true });
  const markdown = renderMarkdown(report);
  writeFileSync(join(args.outDir, 'latest.json'), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(join(args.outDir, 'latest.md'), markdown);
  console.log(`\n${markdown}`);
  log(
    `results in ${join(args.outDir, 'latest.md')} and latest.json; ${report.failures.length} failure(s); ${report.durationSeconds} s`,
  );
  return report.failures.length > 0 || interrupted ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    void killAllChildren().finally(() => process.exit(1));
  },
);

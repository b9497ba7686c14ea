import { DefaultLogger, Runtime } from '@temporalio/worker';
import { Command, Option } from 'commander';
import { resolveAwsRegion } from '../aws/clients';
import { InvalidConfigError } from '../errors';
import type { RecordProcessorFactory } from '../record-processor';
import { createKclWorker } from '../worker';
import { DEFAULT_HEALTH_PORT, LIVENESS_PATH, READINESS_PATH, startHealthServer } from './health-server';
import { parseDuration, parseInteger, parsePort, untilInterrupted } from './options';
import { loadProcessorFactory, parseProcessorSpecs } from './processor-module';
import {
  addAwsOptions,
  addTemporalOptions,
  type AwsFlags,
  connectWorker,
  resolveSettings,
  type TemporalFlags,
} from './settings';

interface WorkerFlags extends TemporalFlags, AwsFlags {
  processor: string[];
  metricsPort?: number;
  healthPort?: number;
  force?: boolean;
  kclFailoverTime: number;
  logLevel: string;
  maxShards?: number;
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

export function workerCommand(): Command {
  const command = new Command('worker')
    .description(
      'Run a worker: shard consumers and their activities, with the record processors of the given modules. ' +
        'Several workers on one task queue share the shards; SIGINT/SIGTERM stop it gracefully (its shards move to the others).',
    )
    .requiredOption(
      '--processor <module>',
      'processor module (JS or TS, ES module or CommonJS) default-exporting a processor factory; `name=path` registers it under a name (default name: default); repeatable',
      collect,
    )
    .addOption(
      new Option('--metrics-port <port>', 'serve Prometheus metrics on this port (/metrics) (default: off)')
        .env('TEMPORAL_KCL_METRICS_PORT')
        .argParser(parsePort),
    )
    .addOption(
      new Option(
        '--health-port <port>',
        `serve ${LIVENESS_PATH} (liveness) and ${READINESS_PATH} (readiness) on this port (default: off; the Docker image sets ${DEFAULT_HEALTH_PORT})`,
      )
        .env('TEMPORAL_KCL_HEALTH_PORT')
        .argParser(parsePort),
    )
    .addOption(
      new Option(
        '--max-shards <n>',
        'hold at most this many shards (1-10000); shards no worker has room for wait in WAITING_FOR_WORKER (default: unlimited)',
      )
        .env('TEMPORAL_KCL_MAX_SHARDS')
        .argParser(parseInteger(1, 10_000)),
    )
    .option(
      '--force',
      'take leases even from live Java KCL workers (whose lease counter moves within --kcl-failover-time) (default: off)',
    )
    .addOption(
      new Option(
        '--kcl-failover-time <duration>',
        "KCL's failoverTimeMillis: a lease of another consumer that did not move for this long is stale and may be taken",
      )
        .argParser(parseDuration)
        .default(10_000, '10s'),
    )
    .addOption(
      new Option('--log-level <level>', 'Temporal SDK log level')
        .choices(['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR'])
        .default('INFO'),
    );
  addTemporalOptions(command);
  addAwsOptions(command);
  return command.action(async (flags: WorkerFlags) => {
    const settings = resolveSettings(flags);
    if (flags.kclFailoverTime > 50_000) {
      throw new InvalidConfigError(
        `--kcl-failover-time must be at most 50s (a lease claim runs within 60 s), got ${flags.kclFailoverTime} ms`,
      );
    }
    await resolveAwsRegion(settings.aws);
    const specs = parseProcessorSpecs(flags.processor);
    const processors: Record<string, RecordProcessorFactory> = {};
    for (const spec of specs) processors[spec.name] = await loadProcessorFactory(spec.path);

    Runtime.install({
      // SIGINT/SIGTERM are this command's: the SDK's own hook would shut the Temporal workers down at once, before the
      // shards held here are handed over.
      shutdownSignals: [],
      logger: new DefaultLogger(flags.logLevel as 'INFO'),
      ...(flags.metricsPort
        ? { telemetryOptions: { metrics: { prometheus: { bindAddress: `0.0.0.0:${flags.metricsPort}` } } } }
        : {}),
    });
    // Up before connecting, so probes see STARTING (live, not ready) rather than a refused connection.
    const health = flags.healthPort ? await startHealthServer(flags.healthPort) : undefined;
    const connection = await connectWorker(settings);
    const worker = await createKclWorker({
      processors,
      connection,
      namespace: settings.namespace,
      taskQueue: settings.taskQueue,
      aws: settings.aws,
      liveOwnerGuard: { failoverTimeMs: flags.kclFailoverTime, force: flags.force ?? false },
      ...(flags.maxShards !== undefined ? { maxShardsPerWorker: flags.maxShards } : {}),
      ...(settings.dataConverter ? { dataConverter: settings.dataConverter } : {}),
    });
    const running = worker.run();
    health?.set('READY');
    console.error(
      `temporal-kcl worker ${worker.identity} ready: task queue ${settings.taskQueue} on ${settings.address} (namespace ${settings.namespace}), ` +
        `processors [${Object.keys(processors).join(', ')}]${flags.maxShards !== undefined ? `, at most ${flags.maxShards} shards` : ''}${flags.metricsPort ? `, metrics on :${flags.metricsPort}/metrics` : ''}`,
    );
    const stopped = running.then(() => 'stopped' as const);
    const outcome = await Promise.race([untilInterrupted(), stopped]);
    if (outcome !== 'stopped') {
      console.error(`${outcome}: shutting down gracefully (shards move to other workers); again to force`);
      const force = () => process.exit(130);
      process.once('SIGINT', force);
      process.once('SIGTERM', force);
      health?.set('STOPPING');
      await worker.shutdown();
    }
    health?.set('STOPPING');
    await running;
    await connection.close();
    health?.set('STOPPED');
    await health?.close();
    console.error('worker stopped');
  });
}

import { Command, Option } from 'commander';
import { runDemo } from '../demo/run-demo';
import { requireDevDependencies } from '../dev/dev-dependencies';
import { parseDuration, parseInteger, parsePort, untilInterrupted } from './options';

interface DemoFlags {
  shards: number;
  rate: number;
  splitAfter: number;
  duration?: number;
  temporalPort?: number;
  uiPort?: number;
}

export function demoCommand(): Command {
  return new Command('demo')
    .description(
      'The main job in one command: local stack, a stream with several shards, a producer of plain and KPL-aggregated ' +
        'records, a worker, the consumer, a shard split midway, live progress and the Temporal UI link. Ctrl-C wraps up.',
    )
    .option('--shards <n>', 'shards of the demo stream', parseInteger(1, 64), 4)
    .option('--rate <records/s>', 'user records per second', parseInteger(1, 10_000), 100)
    .addOption(
      new Option('--split-after <duration>', 'split a shard after this long')
        .argParser(parseDuration)
        .default(15_000, '15s'),
    )
    .option(
      '--duration <duration>',
      'produce for this long, then stop and check (default: until Ctrl-C)',
      parseDuration,
    )
    .option('--temporal-port <port>', 'Temporal gRPC port (default: a free one)', parsePort)
    .option('--ui-port <port>', 'Temporal Web UI port (default: a free one)', parsePort)
    .action(async (flags: DemoFlags) => {
      requireDevDependencies('demo');
      const { default: logUpdate } = await import('log-update');
      const interrupted = untilInterrupted();
      const summary = await runDemo({
        shards: flags.shards,
        rate: flags.rate,
        splitAfterMs: flags.splitAfter,
        ...(flags.duration !== undefined ? { durationMs: flags.duration } : {}),
        until: interrupted,
        stack: {
          temporal: {
            ...(flags.temporalPort ? { port: flags.temporalPort } : {}),
            ...(flags.uiPort ? { uiPort: flags.uiPort } : {}),
          },
        },
        log: (line) => {
          logUpdate.done();
          console.log(line);
        },
        live: (screen) => logUpdate(screen),
      });
      logUpdate.done();
      const ok = summary.delivered === summary.produced && summary.outOfOrder === 0;
      console.log(
        `\n${ok ? 'OK' : 'MISMATCH'}: produced ${summary.produced} user records (${summary.aggregates} aggregates), ` +
          `delivered ${summary.delivered} (duplicates ${summary.duplicates}, out of order ${summary.outOfOrder}); ` +
          `${summary.shardConsumers} shard consumers${summary.split ? ', one shard split' : ''}.`,
      );
      if (!ok) process.exitCode = 1;
    });
}

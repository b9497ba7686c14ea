import { DescribeStreamSummaryCommand } from '@aws-sdk/client-kinesis';
import { Command, Option } from 'commander';
import { createKinesisClient, resolveAwsRegion } from '../aws/clients';
import { getStreamProgress, startStreamConsumer, stopStreamConsumer } from '../client/consumers';
import { isSearchAttributeRefusal, requireSearchAttributes } from '../client/connection';
import { InvalidConfigError, KclError, SearchAttributesMissingError } from '../errors';
import { streamConsumerWorkflowId } from '../ids';
import type { InitialPosition } from '../options';
import { searchAttributeCliPairs } from '../search-attributes';
import { parseDuration, parseInteger, parseTimestamp, untilInterrupted } from './options';
import {
  addAwsOptions,
  addTemporalOptions,
  type AwsFlags,
  connectClient,
  resolveSettings,
  type TemporalFlags,
} from './settings';
import { renderStatus, statusJson } from './status-view';

interface ConsumerFlags extends TemporalFlags, AwsFlags {
  app: string;
  stream: string;
}

/** The stream does not exist where the settings point. */
export class StreamNotFoundError extends KclError {
  override readonly name = 'StreamNotFound';
  constructor(
    readonly streamName: string,
    where: string,
  ) {
    super(`stream ${streamName} not found (${where}); create it, or check --stream, --region and --kinesis-endpoint`);
  }
}

function consumerCommand(name: string, description: string): Command {
  const command = new Command(name)
    .description(description)
    .requiredOption('--app <name>', 'application name (also the default lease table name)')
    .requiredOption('--stream <name>', 'Kinesis stream name');
  addTemporalOptions(command);
  return command;
}

interface StartFlags extends ConsumerFlags {
  initialPosition: InitialPosition;
  timestamp?: string;
  processor: string;
  maxRecords?: number;
  table?: string;
  shardSyncInterval?: number;
  searchAttributes: boolean;
}

export function startCommand(): Command {
  const command = consumerCommand(
    'start',
    'Start consuming a stream: one shard consumer per shard, following resharding.',
  )
    .addOption(
      new Option(
        '--initial-position <position>',
        'where shards without a checkpoint start (child shards always start at TRIM_HORIZON)',
      )
        .choices(['LATEST', 'TRIM_HORIZON', 'AT_TIMESTAMP'])
        .default('LATEST'),
    )
    .option(
      '--timestamp <iso>',
      'start time for --initial-position AT_TIMESTAMP (ISO-8601, e.g. 2026-01-31T12:00:00Z)',
      parseTimestamp,
    )
    .option('--processor <name>', 'name of the processor factory registered on the workers', 'default')
    .option('--max-records <n>', 'most records per GetRecords call (1-10000)', parseInteger(1, 10_000))
    .option('--table <name>', 'lease table (default: the application name)')
    .option('--shard-sync-interval <duration>', 'how often new shards are looked for (e.g. 10s)', parseDuration)
    .option(
      '--no-search-attributes',
      'do not tag workflows with KclApplication/KclStream/KclShard (for clusters without them)',
    );
  addAwsOptions(command);
  return command.action(async (flags: StartFlags) => {
    if (flags.initialPosition === 'AT_TIMESTAMP' && !flags.timestamp) {
      throw new InvalidConfigError('--initial-position AT_TIMESTAMP needs --timestamp <iso>');
    }
    if (flags.timestamp && flags.initialPosition !== 'AT_TIMESTAMP') {
      throw new InvalidConfigError('--timestamp only applies with --initial-position AT_TIMESTAMP');
    }
    const settings = resolveSettings(flags);
    const region = await resolveAwsRegion(settings.aws);
    const kinesis = createKinesisClient({ ...settings.aws, maxAttempts: 2 });
    try {
      await kinesis.send(new DescribeStreamSummaryCommand({ StreamName: flags.stream }));
    } catch (error) {
      const kinesisEndpoint =
        settings.aws.kinesisEndpoint ?? process.env.AWS_ENDPOINT_URL_KINESIS ?? process.env.AWS_ENDPOINT_URL;
      if ((error as { name?: string }).name === 'ResourceNotFoundException') {
        throw new StreamNotFoundError(
          flags.stream,
          `region ${region}${kinesisEndpoint ? `, endpoint ${kinesisEndpoint}` : ''}`,
        );
      }
      throw new KclError(
        `cannot describe stream ${flags.stream}: ${error instanceof Error ? error.message : String(error)}`,
        { cause: error },
      );
    } finally {
      kinesis.destroy();
    }
    const { client, connection, close } = await connectClient(settings);
    try {
      if (flags.searchAttributes) await requireSearchAttributes(connection, settings.namespace);
      const handle = await startStreamConsumer(client, {
        applicationName: flags.app,
        streamName: flags.stream,
        processor: flags.processor,
        taskQueue: settings.taskQueue,
        ...(flags.table ? { tableName: flags.table } : {}),
        ...(flags.shardSyncInterval !== undefined ? { shardSyncIntervalMs: flags.shardSyncInterval } : {}),
        searchAttributes: flags.searchAttributes,
        shardOptions: {
          initialPosition: flags.initialPosition,
          ...(flags.timestamp ? { initialPositionTimestamp: flags.timestamp } : {}),
          ...(flags.maxRecords !== undefined ? { maxRecords: flags.maxRecords } : {}),
        },
      }).catch((error: unknown) => {
        if (!isSearchAttributeRefusal(error)) throw error;
        const named = searchAttributeCliPairs().filter((pair) => String(error).includes(pair.split('=')[0] ?? pair));
        throw new SearchAttributesMissingError(
          settings.namespace,
          named.length > 0 ? named : searchAttributeCliPairs(),
          {
            cause: error,
          },
        );
      });
      console.log(
        `started ${handle.workflowId} on task queue ${settings.taskQueue}; workers with processor '${flags.processor}' consume it`,
      );
    } finally {
      await close();
    }
  });
}

interface StopFlags extends ConsumerFlags {
  wait: boolean;
  timeout: number;
}

export function stopCommand(): Command {
  return consumerCommand(
    'stop',
    'Stop consuming a stream: every shard consumer gets shutdown(REQUESTED) and checkpoints.',
  )
    .option('--no-wait', 'return once the stop is requested, without waiting for the consumers to finish')
    .option('--timeout <duration>', 'how long to wait for the consumers to stop', parseDuration, 300_000)
    .action(async (flags: StopFlags) => {
      const settings = resolveSettings(flags);
      const { client, close } = await connectClient(settings);
      try {
        const ref = { applicationName: flags.app, streamName: flags.stream };
        if (!flags.wait) {
          await stopStreamConsumer(client, ref);
          console.log(`stop requested for ${streamConsumerWorkflowId(flags.app, flags.stream)}`);
          return;
        }
        let timer: NodeJS.Timeout | undefined;
        const timedOut = new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new KclError(`the consumers did not stop within ${flags.timeout} ms; see \`temporal-kcl status\``),
              ),
            flags.timeout,
          );
        });
        try {
          const result = await Promise.race([stopStreamConsumer(client, { ...ref, wait: true }), timedOut]);
          const ended = Object.entries(result?.ended ?? {})
            .map(([reason, count]) => `${reason}: ${count}`)
            .join(', ');
          console.log(
            `stopped ${streamConsumerWorkflowId(flags.app, flags.stream)}: ${result?.started ?? 0} shard consumers started in all (${ended || 'none ended'})`,
          );
        } finally {
          clearTimeout(timer);
        }
      } finally {
        await close();
      }
    });
}

interface StatusFlags extends ConsumerFlags {
  json?: boolean;
  watch?: boolean;
  interval: number;
}

export function statusCommand(): Command {
  return consumerCommand(
    'status',
    'Show one row per shard: state, checkpoint, last processed record, records, millis behind.',
  )
    .option('--json', 'print JSON')
    .option('--watch', 'keep refreshing until Ctrl-C')
    .option('--interval <duration>', 'refresh interval with --watch', parseDuration, 2_000)
    .action(async (flags: StatusFlags) => {
      const settings = resolveSettings(flags);
      const { client, close } = await connectClient(settings);
      const ref = { applicationName: flags.app, streamName: flags.stream };
      try {
        if (!flags.watch) {
          const status = await getStreamProgress(client, ref);
          console.log(flags.json ? JSON.stringify(statusJson(status), null, 2) : renderStatus(status));
          return;
        }
        const { default: logUpdate } = await import('log-update');
        let stop = false;
        void untilInterrupted().then(() => {
          stop = true;
        });
        while (!stop) {
          const status = await getStreamProgress(client, ref);
          if (flags.json) console.log(JSON.stringify(statusJson(status)));
          else logUpdate(`${renderStatus(status)}\n\nrefreshing every ${flags.interval} ms; Ctrl-C to quit`);
          await new Promise((resolve) => setTimeout(resolve, flags.interval));
        }
        if (!flags.json) logUpdate.done();
      } finally {
        await close();
      }
    });
}

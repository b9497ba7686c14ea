import { DescribeStreamSummaryCommand } from '@aws-sdk/client-kinesis';
import { Command, Option } from 'commander';
import { createDynamoDbClient, createKinesisClient, resolveAwsRegion } from '../aws/clients';
import { describeFleet } from '../activities/fleet-activities';
import { CheckpointTable } from '../checkpoint/checkpoint-table';
import { prepareLeaseLayout } from '../checkpoint/lease-layout';
import { getStreamProgress, startStreamConsumer, stopStreamConsumer } from '../client/consumers';
import { isSearchAttributeRefusal, requireSearchAttributes } from '../client/connection';
import { InvalidConfigError, KclError, SearchAttributesMissingError } from '../errors';
import { defaultTableName, leaseTableNameProblem, streamConsumerWorkflowId } from '../ids';
import { searchAttributeCliPairs } from '../search-attributes';
import { formatDuration, parseDuration, untilInterrupted } from './options';
import { addShardOptionFlags, type ShardOptionFlags, shardOptionsFromFlags } from './shard-option-flags';
import {
  addAwsOptions,
  addTemporalOptions,
  type AwsFlags,
  connectClient,
  resolveSettings,
  type TemporalFlags,
} from './settings';
import { renderStatus, statusJson, statusProblems } from './status-view';

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

interface StartFlags extends ConsumerFlags, ShardOptionFlags {
  processor: string;
  table?: string;
  multiStream?: boolean;
  shardSyncInterval?: number;
  searchAttributes: boolean;
}

export function startCommand(): Command {
  const command = consumerCommand(
    'start',
    'Start consuming a stream: one shard consumer per shard, following resharding.',
  ).option('--processor <name>', 'name of the processor factory registered on the workers', 'default');
  addShardOptionFlags(command)
    .option('--table <name>', 'lease table (default: the application name)')
    .option(
      '--multi-stream',
      "keep this stream's leases in Java KCL's multi-stream layout (<account>:<stream>:<epoch>:<shard>), so several " +
        'streams share the lease table; every stream on the table needs it (default: single-stream)',
    )
    .option(
      '--shard-sync-interval <duration>',
      'how often new shards are looked for; children start as soon as their parent ends (default: 60s)',
      parseDuration,
    )
    .option(
      '--no-search-attributes',
      'do not tag workflows with KclApplication/KclStream/KclShard/KclState (for namespaces without them) (default: tag them)',
    );
  addAwsOptions(command);
  return command.action(async (flags: StartFlags) => {
    if (flags.initialPosition === 'AT_TIMESTAMP' && !flags.timestamp) {
      throw new InvalidConfigError('--initial-position AT_TIMESTAMP needs --timestamp <iso>');
    }
    if (flags.timestamp && flags.initialPosition !== 'AT_TIMESTAMP' && !flags.options) {
      throw new InvalidConfigError('--timestamp only applies with --initial-position AT_TIMESTAMP');
    }
    const shardOptions = shardOptionsFromFlags(flags);
    const settings = resolveSettings(flags);
    const region = await resolveAwsRegion(settings.aws);
    const tableName = flags.table ?? defaultTableName(flags.app);
    const tableProblem = leaseTableNameProblem(tableName);
    if (tableProblem) throw new InvalidConfigError(tableProblem);
    const kinesis = createKinesisClient({ ...settings.aws, maxAttempts: 2 });
    const dynamoDb = createDynamoDbClient({ ...settings.aws, maxAttempts: 2 });
    try {
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
      }
      // Refuse now, with the reason, a start the stream consumer would refuse: mixed lease layouts in one table, or a
      // second stream on a single-stream table.
      try {
        await prepareLeaseLayout(
          { kinesis, dynamoDb },
          { tableName, applicationName: flags.app, streamName: flags.stream, multiStream: flags.multiStream ?? false },
        );
      } catch (error) {
        if (error instanceof KclError) throw error;
        throw new KclError(
          `cannot read lease table ${tableName}: ${error instanceof Error ? error.message : String(error)}`,
          { cause: error },
        );
      }
    } finally {
      kinesis.destroy();
      dynamoDb.destroy();
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
        ...(flags.multiStream ? { multiStream: true } : {}),
        ...(flags.shardSyncInterval !== undefined ? { shardSyncIntervalMs: flags.shardSyncInterval } : {}),
        searchAttributes: flags.searchAttributes,
        shardOptions,
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
  deregister?: boolean;
}

export function stopCommand(): Command {
  return consumerCommand(
    'stop',
    'Stop consuming a stream: every shard consumer gets shutdown(REQUESTED) and checkpoints.',
  )
    .option(
      '--no-wait',
      'return once the stop is requested, without waiting for the consumers to finish (default: wait)',
    )
    .addOption(
      new Option('--timeout <duration>', 'how long to wait for the consumers to stop')
        .argParser(parseDuration)
        .default(300_000, '5m'),
    )
    .option(
      '--deregister',
      'retrieval fan-out: once every shard consumer has stopped, deregister the enhanced fan-out consumer (AWS stops billing its consumer-shard hours) (default: keep it)',
    )
    .action(async (flags: StopFlags) => {
      const settings = resolveSettings(flags);
      const { client, close } = await connectClient(settings);
      try {
        const ref = {
          applicationName: flags.app,
          streamName: flags.stream,
          ...(flags.deregister ? { deregisterConsumer: true } : {}),
        };
        if (!flags.wait) {
          await stopStreamConsumer(client, ref);
          console.log(
            `stop requested for ${streamConsumerWorkflowId(flags.app, flags.stream)}` +
              (flags.deregister ? '; its enhanced fan-out consumer is deregistered once every shard has stopped' : ''),
          );
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
          if (result?.deregisteredConsumer) {
            console.log(`deregistered the enhanced fan-out consumer ${result.deregisteredConsumer}`);
          } else if (flags.deregister) {
            console.log('no enhanced fan-out consumer to deregister: this application reads by polling');
          }
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
  check?: boolean;
  maxBehind: number;
  table?: string;
}

export function statusCommand(): Command {
  const command = consumerCommand(
    'status',
    'Show one row per shard: state, checkpoint, last processed record, records, millis behind, worker (from its ' +
      'lease item); and one row per worker: live, shards, --max-shards, records/s, KB/s. Without a live worker ' +
      'the states come from the KclState search attribute and the checkpoints from the lease table.',
  )
    .option('--json', 'print JSON')
    .option('--watch', 'keep refreshing until Ctrl-C')
    .addOption(
      new Option('--interval <duration>', 'refresh interval with --watch')
        .argParser(parseDuration)
        .default(2_000, '2s'),
    )
    .option(
      '--check',
      'exit 1 (listing why on stderr) when a shard is HALTED or WAITING_FOR_WORKER, or behind by more than --max-behind',
    )
    .addOption(
      new Option('--max-behind <duration>', 'with --check: most lag (millisBehindLatest) a healthy shard may have')
        .argParser(parseDuration)
        .default(300_000, '5m'),
    )
    .option(
      '--table <name>',
      "lease table: each shard's worker and load, and the checkpoints when no worker answers (default: the application name)",
    );
  addAwsOptions(command);
  return command.action(async (flags: StatusFlags) => {
    const settings = resolveSettings(flags);
    const { client, close } = await connectClient(settings);
    const ref = { applicationName: flags.app, streamName: flags.stream };
    const dynamoDb = createDynamoDbClient({ ...settings.aws, maxAttempts: 2 });
    const table = new CheckpointTable({ dynamoDb, tableName: flags.table ?? defaultTableName(flags.app) });
    // Where each shard's processor is and the workers' load: the lease items and the task queue's pollers. Without
    // them (no table yet, no permission to describe the task queue) the status still shows what the consumers say.
    const fleet = () =>
      describeFleet({ client, dynamoDb }, { taskQueue: settings.taskQueue, tableName: table.tableName }).catch(
        () => undefined,
      );
    const progress = async () => {
      const [status, view] = await Promise.all([
        getStreamProgress(client, ref, { leases: () => table.listLeases() }),
        fleet(),
      ]);
      return statusJson(status, view);
    };
    try {
      if (!flags.watch) {
        const summary = await progress();
        console.log(flags.json ? JSON.stringify(summary, null, 2) : renderStatus(summary));
        if (flags.check) {
          const problems = statusProblems(summary, flags.maxBehind);
          for (const problem of problems) console.error(`unhealthy: ${problem}`);
          if (problems.length > 0) process.exitCode = 1;
        }
        return;
      }
      const { default: logUpdate } = await import('log-update');
      let stop = false;
      void untilInterrupted().then(() => {
        stop = true;
      });
      while (!stop) {
        const summary = await progress();
        if (flags.json) console.log(JSON.stringify(summary));
        else
          logUpdate(`${renderStatus(summary)}\n\nrefreshing every ${formatDuration(flags.interval)}; Ctrl-C to quit`);
        await new Promise((resolve) => setTimeout(resolve, flags.interval));
      }
      if (!flags.json) logUpdate.done();
    } finally {
      dynamoDb.destroy();
      await close();
    }
  });
}

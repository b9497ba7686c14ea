import { Command, InvalidArgumentError, Option } from 'commander';
import { parsePort, untilInterrupted } from './options';
import { type DevStack, KINESIS_EMULATORS, startDevStack } from '../dev/dev-stack';
import { requireDevDependencies } from '../dev/dev-dependencies';
import { canBind, getFreePort } from '../dev/net';

/** The well-known port if free, else a free one (and say so). */
async function preferredPort(name: string, port: number, explicit: boolean): Promise<number> {
  if (await canBind(port)) return port;
  if (explicit) throw new InvalidArgumentError(`${name} port ${port} is in use; pick another with its flag`);
  const other = await getFreePort();
  console.error(`${name}: port ${port} is in use, using ${other}`);
  return other;
}

/** What a real cluster adds to the block: its services, PostgreSQL and the metrics endpoints. */
function clusterLines(stack: DevStack): string[] {
  const cluster = stack.temporal.cluster;
  if (!cluster) return [];
  const services = Object.entries(cluster.services);
  return [
    `Cluster            Temporal Server ${cluster.serverVersion}: ${services.map(([name, s]) => `${name} :${s.grpcPort}`).join(', ')} (separate processes, SQL visibility)`,
    `PostgreSQL         ${cluster.postgres.url}  (${cluster.postgres.version}, data in ${cluster.postgres.dataDir})`,
    `Metrics            ${services.map(([name, s]) => `${name} ${s.metricsUrl}`).join('\n                   ')}`,
  ];
}

/** Prints where the stack's parts listen and the environment that points temporal-kcl at them. */
export function describeStack(stack: DevStack): string {
  const { credentials, region } = stack.aws;
  const fanOut = stack.kinesisFanOutEndpoint
    ? [
        `Kinesis (fan-out)  ${stack.kinesisFanOutEndpoint}  (SubscribeToShard over HTTP/2, the rest forwarded)`,
        `                   use: --kinesis-endpoint ${stack.kinesisFanOutEndpoint} --retrieval fan-out`,
      ]
    : [];
  return [
    `Temporal           ${stack.temporal.address}  (namespace ${stack.temporal.namespace})`,
    `Temporal UI        ${stack.temporal.uiUrl ?? '(headless)'}`,
    `Kinesis            ${stack.kinesisEndpoint}  (${stack.kinesisEmulator})`,
    ...fanOut,
    `DynamoDB           ${stack.dynamoDbEndpoint}  (dynalite)`,
    `Logs               ${stack.logDir}`,
    ...clusterLines(stack),
    '',
    'In another shell:',
    `  export TEMPORAL_ADDRESS=${stack.temporal.address} TEMPORAL_NAMESPACE=${stack.temporal.namespace} AWS_REGION=${region} \\`,
    `    KINESIS_ENDPOINT=${stack.kinesisEndpoint} DYNAMODB_ENDPOINT=${stack.dynamoDbEndpoint} \\`,
    `    AWS_ACCESS_KEY_ID=${credentials.accessKeyId} AWS_SECRET_ACCESS_KEY=${credentials.secretAccessKey}`,
  ].join('\n');
}

interface DevFlags {
  temporalPort?: number;
  uiPort?: number;
  kinesisPort?: number;
  dynamodbPort?: number;
  dbFile?: string;
  headless?: boolean;
  uiCodecEndpoint?: string;
  kinesisEmulator: (typeof KINESIS_EMULATORS)[number];
  cluster?: boolean;
}

export function devCommand(): Command {
  return new Command('dev')
    .description(
      'Start the local stack: Temporal dev server with its Web UI, a Kinesis emulator and a DynamoDB emulator. Ctrl-C stops all of it.',
    )
    .option('--temporal-port <port>', 'Temporal gRPC port (default 7233, or a free one)', parsePort)
    .option('--ui-port <port>', 'Temporal Web UI port (default 8233, or a free one)', parsePort)
    .option('--kinesis-port <port>', 'Kinesis emulator port (default 4567, or a free one)', parsePort)
    .option('--dynamodb-port <port>', 'DynamoDB emulator port (default 4568, or a free one)', parsePort)
    .option('--db-file <path>', 'SQLite file that keeps Temporal state across restarts (default: in memory)')
    .option('--headless', 'run Temporal without its Web UI')
    .option(
      '--cluster',
      'a real Temporal cluster instead of the dev server: frontend, history, matching and worker as separate processes on a local PostgreSQL (built with Go on first use; npm run cluster)',
    )
    .option(
      '--ui-codec-endpoint <url>',
      'codec server the Web UI uses to decode payloads (see codec-server) (default: none)',
    )
    .addOption(
      new Option('--kinesis-emulator <name>', 'Kinesis emulator').choices(KINESIS_EMULATORS).default('kinesis-local'),
    )
    .action(async (flags: DevFlags) => {
      requireDevDependencies('dev');
      if (flags.cluster && flags.dbFile) {
        throw new InvalidArgumentError(
          '--db-file applies to the dev server only: a --cluster keeps its state in PostgreSQL',
        );
      }
      const stack = await startDevStack({
        temporal: {
          ...(flags.cluster ? { cluster: true } : {}),
          port: await preferredPort('temporal', flags.temporalPort ?? 7233, flags.temporalPort !== undefined),
          ...(flags.headless
            ? { headless: true }
            : { uiPort: await preferredPort('temporal UI', flags.uiPort ?? 8233, flags.uiPort !== undefined) }),
          ...(flags.dbFile ? { dbFilename: flags.dbFile } : {}),
          ...(flags.uiCodecEndpoint ? { uiCodecEndpoint: flags.uiCodecEndpoint } : {}),
        },
        kinesis: {
          emulator: flags.kinesisEmulator,
          port: await preferredPort('kinesis', flags.kinesisPort ?? 4567, flags.kinesisPort !== undefined),
        },
        dynamoDb: {
          port: await preferredPort('dynamodb', flags.dynamodbPort ?? 4568, flags.dynamodbPort !== undefined),
        },
        log: (line) => console.error(line),
      });
      console.log(describeStack(stack));
      console.log('\nPress Ctrl-C to stop.');
      const signal = await untilInterrupted();
      console.error(`\n${signal}: stopping the local stack...`);
      await stack.stop();
      console.error('stopped.');
    });
}

import { Command, Option } from 'commander';
import { createDynamoDbClient, createKinesisClient, resolveAwsRegion } from '../aws/clients';
import { defaultTableName } from '../ids';
import { importVmwareCheckpoints } from '../migration/vmware-go-kcl';
import { formatPosition } from '../positions';
import { addAwsOptions, type AwsFlags, resolveSettings } from './settings';

interface ImportFlags extends AwsFlags {
  from: 'vmware-go-kcl';
  table: string;
  app: string;
  stream: string;
  leaseTable?: string;
  dryRun?: boolean;
  force?: boolean;
}

/** `temporal-kcl import-checkpoints`: positions of another consumer library into the KCL lease table. */
export function importCheckpointsCommand(): Command {
  const command = new Command('import-checkpoints')
    .description(
      "Copy another consumer library's checkpoints into the application's KCL-format lease table, so temporal-kcl " +
        'resumes where it stopped. Idempotent; leases that exist are never overwritten.',
    )
    .addOption(
      new Option('--from <library>', 'the library that wrote the table')
        .choices(['vmware-go-kcl'])
        .makeOptionMandatory(),
    )
    .requiredOption('--table <name>', "the library's checkpoint table")
    .requiredOption('--app <name>', 'application name (the default KCL lease table name)')
    .requiredOption('--stream <name>', 'Kinesis stream name')
    .option('--lease-table <name>', 'KCL lease table to write (default: the application name); start with --table <it>')
    .option('--dry-run', 'show what would be written, write nothing (default: off)')
    .option('--force', 'import even while a worker of that library holds a lease (default: off)');
  addAwsOptions(command);
  return command.action(async (flags: ImportFlags) => {
    const settings = resolveSettings({
      ...(flags.region ? { region: flags.region } : {}),
      ...(flags.kinesisEndpoint ? { kinesisEndpoint: flags.kinesisEndpoint } : {}),
      ...(flags.dynamodbEndpoint ? { dynamodbEndpoint: flags.dynamodbEndpoint } : {}),
    });
    await resolveAwsRegion(settings.aws);
    const dynamoDb = createDynamoDbClient({ ...settings.aws, maxAttempts: 3 });
    const kinesis = createKinesisClient({ ...settings.aws, maxAttempts: 2 });
    const leaseTable = flags.leaseTable ?? defaultTableName(flags.app);
    try {
      const entries = await importVmwareCheckpoints({
        dynamoDb,
        kinesis,
        sourceTable: flags.table,
        leaseTable,
        streamName: flags.stream,
        dryRun: flags.dryRun ?? false,
        force: flags.force ?? false,
      });
      const verb = flags.dryRun ? { create: 'would create' } : { create: 'created' };
      for (const entry of entries) {
        const action = entry.action === 'create' ? verb.create : entry.action;
        console.log(
          `${entry.shardId}: ${entry.source ?? '(no checkpoint)'} -> ${entry.target ? formatPosition(entry.target) : '-'}  ${action}${entry.detail ? ` (${entry.detail})` : ''}`,
        );
      }
      const count = (action: string) => entries.filter((entry) => entry.action === action).length;
      console.log(
        `${flags.dryRun ? 'dry run, nothing written: ' : ''}${count('create')} ${flags.dryRun ? 'to create' : 'created'}, ` +
          `${count('unchanged')} unchanged, ${count('conflict')} conflicting, ${count('no-checkpoint')} without a checkpoint ` +
          `(${flags.table} -> ${leaseTable})`,
      );
      if (count('conflict') > 0) {
        console.error(
          'conflicting leases were left as they are: the lease table already has other positions for them (a consumer ' +
            'moved on, or another import); check them with `temporal-kcl status` before starting',
        );
        process.exitCode = 1;
      }
    } finally {
      dynamoDb.destroy();
      kinesis.destroy();
    }
  });
}

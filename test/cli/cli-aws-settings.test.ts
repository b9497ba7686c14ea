/**
 * AWS settings as AWS SDK users know them: the region comes from the SDK's chain (a profile's region is not overridden
 * by a fallback of ours), the standard AWS_ENDPOINT_URL_KINESIS / AWS_ENDPOINT_URL_DYNAMODB variables work, and
 * KINESIS_ENDPOINT / DYNAMODB_ENDPOINT are shorthands that win over them.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createDynamoDbClient } from '../../src/aws/clients';
import { CheckpointTable } from '../../src/checkpoint/checkpoint-table';
import { streamConsumerWorkflowId } from '../../src/ids';
import { cliEnvironment, killAllCliProcesses, runCli } from '../helpers/cli';
import { createStream, kclTestContext, type KclTestContext } from '../helpers/kcl';
import { uniqueName } from '../helpers/stack';

describe('AWS settings', () => {
  let context: KclTestContext;
  let dir: string;
  before(async () => {
    context = await kclTestContext();
    dir = mkdtempSync(join(tmpdir(), 'kcl-aws-'));
  });
  after(async () => {
    await killAllCliProcesses();
    await context.close();
  });

  /** The CLI's environment with no AWS_REGION and an AWS config file of our own (`content`). */
  const withAwsConfig = (content: string, extra: Record<string, string> = {}) => {
    const file = join(dir, `${uniqueName('config')}`);
    writeFileSync(file, content);
    const env = cliEnvironment(context.stack, {
      AWS_CONFIG_FILE: file,
      AWS_SHARED_CREDENTIALS_FILE: join(dir, 'no-credentials'),
      ...extra,
    });
    delete env.AWS_REGION;
    delete env.AWS_DEFAULT_REGION;
    return env;
  };

  test('the region of the AWS profile is used (no hard-coded fallback overrides it)', async () => {
    const streamName = await createStream(context.kinesis, 1, 'aws-region');
    // kinesis-local keeps streams per region: the stream exists in us-east-1, so a start in eu-west-3 cannot find it.
    // Region and credentials both from the profile, as a user's ~/.aws/config would give them.
    const env = withAwsConfig(
      '[profile kcl-test]\nregion = eu-west-3\naws_access_key_id = local\naws_secret_access_key = local\n',
      { AWS_PROFILE: 'kcl-test' },
    );
    delete env.AWS_ACCESS_KEY_ID;
    delete env.AWS_SECRET_ACCESS_KEY;
    const run = await runCli(['start', '--app', uniqueName('app'), '--stream', streamName], env);
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, new RegExp(`stream ${streamName} not found \\(region eu-west-3`), run.stderr);
    // --region (and AWS_REGION) still win over the profile.
    const flagged = await runCli(
      ['start', '--app', uniqueName('app'), '--stream', streamName, '--region', 'ap-south-1'],
      env,
    );
    assert.match(flagged.stderr, /\(region ap-south-1/, flagged.stderr);
  });

  test('no region anywhere: the error says where to set one', async () => {
    const env = withAwsConfig('');
    const run = await runCli(['start', '--app', 'app', '--stream', 'some-stream'], env);
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /no AWS region: set --region, AWS_REGION, or region in the AWS profile/, run.stderr);
    const worker = await runCli(['worker', '--processor', 'src/examples/logging-processor.ts'], env);
    assert.notEqual(worker.code, 0);
    assert.match(worker.stderr, /no AWS region/, worker.stderr);
  });

  test('AWS_ENDPOINT_URL_KINESIS and AWS_ENDPOINT_URL_DYNAMODB are honoured; KINESIS_ENDPOINT wins over them', async () => {
    const streamName = await createStream(context.kinesis, 1, 'aws-endpoint');
    const applicationName = uniqueName('endpoint-app');
    const env = cliEnvironment(context.stack, {
      AWS_ENDPOINT_URL_KINESIS: context.stack.aws.kinesisEndpoint,
      AWS_ENDPOINT_URL_DYNAMODB: context.stack.aws.dynamoDbEndpoint,
      TEMPORAL_KCL_TASK_QUEUE: uniqueName('endpoint-tq'),
    });
    delete env.KINESIS_ENDPOINT;
    delete env.DYNAMODB_ENDPOINT;
    const run = await runCli(['start', '--app', applicationName, '--stream', streamName], env);
    assert.equal(run.code, 0, run.stderr);
    await context.client.workflow.getHandle(streamConsumerWorkflowId(applicationName, streamName)).terminate('test');

    // The shorthand wins: a dead AWS_ENDPOINT_URL_KINESIS does not matter when KINESIS_ENDPOINT is set.
    const shorthand = await runCli(['start', '--app', uniqueName('endpoint-app'), '--stream', uniqueName('absent')], {
      ...env,
      AWS_ENDPOINT_URL_KINESIS: 'http://127.0.0.1:1',
      KINESIS_ENDPOINT: context.stack.aws.kinesisEndpoint,
    });
    assert.match(shorthand.stderr, /stream absent-\S+ not found/, shorthand.stderr);

    // DynamoDB: a client without an endpoint of ours reaches dynalite through AWS_ENDPOINT_URL_DYNAMODB.
    const saved = process.env.AWS_ENDPOINT_URL_DYNAMODB;
    process.env.AWS_ENDPOINT_URL_DYNAMODB = context.stack.aws.dynamoDbEndpoint;
    const dynamoDb = createDynamoDbClient({ region: 'us-east-1', credentials: context.stack.aws.credentials });
    try {
      const table = new CheckpointTable({ dynamoDb, tableName: uniqueName('endpoint-table') });
      await table.ensureTable();
      const lease = await table.claim({ shardId: 'shardId-000000000000', owner: 'me' });
      assert.equal(lease.owner, 'me');
      assert.equal((await table.getLease('shardId-000000000000'))?.counter, 1);
    } finally {
      dynamoDb.destroy();
      if (saved === undefined) delete process.env.AWS_ENDPOINT_URL_DYNAMODB;
      else process.env.AWS_ENDPOINT_URL_DYNAMODB = saved;
    }
  });
});

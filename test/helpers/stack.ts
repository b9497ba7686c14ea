import { type AwsConfig, EMULATOR_CREDENTIALS } from '../../src/aws/clients';
import { type DevStack, startDevStack } from '../../src/dev/dev-stack';

export interface TestStack {
  temporalAddress: string;
  namespace: string;
  uiUrl: string | undefined;
  /**
   * The stack's enhanced fan-out front (src/dev/fan-out-server.ts): SubscribeToShard for the SDK's default HTTP/2
   * client, every other call forwarded to kinesis-local. Undefined when the stack runs kinesalite.
   */
  kinesisFanOutEndpoint: string | undefined;
  aws: AwsConfig & Required<Pick<AwsConfig, 'region' | 'kinesisEndpoint' | 'dynamoDbEndpoint' | 'credentials'>>;
}

let shared: Promise<TestStack> | undefined;

/**
 * The local stack for integration tests: the one `npm test` started (TEMPORAL_KCL_TEST_* variables), or, when a test
 * file runs on its own, a stack of its own that stops when the file's tests end.
 */
export function testStack(): Promise<TestStack> {
  shared ??= (async () => {
    const env = process.env;
    if (
      env.TEMPORAL_KCL_TEST_TEMPORAL_ADDRESS &&
      env.TEMPORAL_KCL_TEST_KINESIS_ENDPOINT &&
      env.TEMPORAL_KCL_TEST_DYNAMODB_ENDPOINT
    ) {
      return {
        temporalAddress: env.TEMPORAL_KCL_TEST_TEMPORAL_ADDRESS,
        namespace: env.TEMPORAL_KCL_TEST_TEMPORAL_NAMESPACE || 'default',
        uiUrl: env.TEMPORAL_KCL_TEST_TEMPORAL_UI_URL || undefined,
        kinesisFanOutEndpoint: env.TEMPORAL_KCL_TEST_KINESIS_FANOUT_ENDPOINT || undefined,
        aws: {
          region: 'us-east-1',
          // The fan-out pass reaches Kinesis through the fan-out front: it serves SubscribeToShard and forwards the rest.
          kinesisEndpoint:
            (env.TEMPORAL_KCL_TEST_RETRIEVAL === 'fan-out' && env.TEMPORAL_KCL_TEST_KINESIS_FANOUT_ENDPOINT) ||
            env.TEMPORAL_KCL_TEST_KINESIS_ENDPOINT,
          dynamoDbEndpoint: env.TEMPORAL_KCL_TEST_DYNAMODB_ENDPOINT,
          credentials: EMULATOR_CREDENTIALS,
        },
      };
    }
    // A file run on its own gets a stack of its own; it must outlive every test of the file (an `after` hook here
    // would bind to whichever test asked first), so it does not hold the process open and dies with it.
    const stack: DevStack = await startDevStack({ unref: true });
    return {
      temporalAddress: stack.temporal.address,
      namespace: stack.temporal.namespace,
      uiUrl: stack.temporal.uiUrl,
      kinesisFanOutEndpoint: stack.kinesisFanOutEndpoint,
      aws: stack.aws,
    };
  })();
  return shared;
}

/** A name no other test uses, for streams, tables, applications and workflow ids. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

/**
 * The enhanced fan-out consumer of an application (`retrieval: 'fan-out'`): registered on the stream when it does not
 * exist yet, waited for until ACTIVE, and deregistered on `temporal-kcl stop --deregister`.
 */
import {
  DeregisterStreamConsumerCommand,
  DescribeStreamConsumerCommand,
  DescribeStreamSummaryCommand,
  type KinesisClient,
  RegisterStreamConsumerCommand,
} from '@aws-sdk/client-kinesis';
import { Context } from '@temporalio/activity';
import type { FanOutConsumer } from '../consumer-types';
import { awsErrorName, kinesisFailure } from './aws-failures';

/** How often a consumer that is CREATING or DELETING is described again. */
const STATUS_POLL_MS = 1_000;

const isNotFound = (error: unknown) => awsErrorName(error) === 'ResourceNotFoundException';
const isInUse = (error: unknown) => awsErrorName(error) === 'ResourceInUseException';

export function createFanOutConsumerActivities({ kinesis }: { kinesis: KinesisClient }) {
  return {
    /**
     * The stream consumer named `consumerName` on `streamName`, registered if it does not exist (Kinesis then reports
     * it CREATING for a few seconds), once it is ACTIVE. One being deleted (a `stop --deregister` just before) is waited
     * out and registered again. Heartbeats while it waits.
     */
    async registerStreamConsumer(input: { streamName: string; consumerName: string }): Promise<FanOutConsumer> {
      const { streamName, consumerName } = input;
      const what = `enhanced fan-out consumer ${consumerName} of stream ${streamName}`;
      let streamArn: string | undefined;
      try {
        const summary = await kinesis.send(new DescribeStreamSummaryCommand({ StreamName: streamName }));
        streamArn = summary.StreamDescriptionSummary?.StreamARN;
      } catch (error) {
        throw kinesisFailure(error, `DescribeStreamSummary of stream ${streamName} (to register the ${what})`);
      }
      if (!streamArn) throw new Error(`DescribeStreamSummary of stream ${streamName} returned no StreamARN`);
      const context = Context.current();
      for (;;) {
        context.heartbeat();
        let status: string | undefined;
        let consumerArn: string | undefined;
        try {
          const described = await kinesis.send(
            new DescribeStreamConsumerCommand({ StreamARN: streamArn, ConsumerName: consumerName }),
          );
          status = described.ConsumerDescription?.ConsumerStatus;
          consumerArn = described.ConsumerDescription?.ConsumerARN;
        } catch (error) {
          if (!isNotFound(error)) throw kinesisFailure(error, `DescribeStreamConsumer (${what})`);
          try {
            const registered = await kinesis.send(
              new RegisterStreamConsumerCommand({ StreamARN: streamArn, ConsumerName: consumerName }),
            );
            status = registered.Consumer?.ConsumerStatus;
            consumerArn = registered.Consumer?.ConsumerARN;
          } catch (registerError) {
            // Registered meanwhile by another caller: described again below.
            if (!isInUse(registerError)) {
              throw kinesisFailure(
                registerError,
                `RegisterStreamConsumer (${what}; a stream has at most 20 consumers, and at most 5 may be CREATING at once)`,
              );
            }
          }
        }
        if (status === 'ACTIVE' && consumerArn) return { consumerName, consumerArn };
        await context.sleep(STATUS_POLL_MS);
      }
    },

    /** Deregisters the consumer; true if it was there (one already gone is not an error). */
    async deregisterStreamConsumer(input: { consumerArn: string }): Promise<boolean> {
      try {
        await kinesis.send(new DeregisterStreamConsumerCommand({ ConsumerARN: input.consumerArn }));
        return true;
      } catch (error) {
        if (isNotFound(error)) return false;
        throw kinesisFailure(error, `DeregisterStreamConsumer ${input.consumerArn}`);
      }
    },
  };
}

/**
 * AWS event-stream frames for the dev fan-out server (src/dev/fan-out-server.ts): SubscribeToShard events and
 * exceptions as the AWS SDK's event-stream unmarshaller reads them (JSON payloads, as Kinesis' JSON 1.1 protocol has).
 */
import type { _Record } from '@aws-sdk/client-kinesis';
import { EventStreamCodec } from '@smithy/core/event-streams';
import { fromUtf8, toUtf8 } from '@smithy/core/serde';

const codec = new EventStreamCodec(toUtf8, fromUtf8);

function stringHeader(value: string) {
  return { type: 'string' as const, value };
}

/** One event frame (`:message-type: event`) with a JSON payload. */
export function eventFrame(eventType: string, payload: unknown): Uint8Array {
  return codec.encode({
    headers: {
      ':message-type': stringHeader('event'),
      ':event-type': stringHeader(eventType),
      ':content-type': stringHeader('application/json'),
    },
    body: fromUtf8(JSON.stringify(payload)),
  });
}

/** One modeled error inside the stream (`:message-type: exception`): the SDK throws it from the event iterator. */
export function exceptionFrame(exceptionType: string, message: string): Uint8Array {
  return codec.encode({
    headers: {
      ':message-type': stringHeader('exception'),
      ':exception-type': stringHeader(exceptionType),
      ':content-type': stringHeader('application/json'),
    },
    body: fromUtf8(JSON.stringify({ message })),
  });
}

/** A record in Kinesis' JSON 1.1 wire shape: epoch seconds, base64 data. */
export function wireRecord(record: _Record) {
  return {
    SequenceNumber: record.SequenceNumber,
    ApproximateArrivalTimestamp: (record.ApproximateArrivalTimestamp?.getTime() ?? Date.now()) / 1000,
    Data: Buffer.from(record.Data ?? new Uint8Array()).toString('base64'),
    PartitionKey: record.PartitionKey,
    ...(record.EncryptionType ? { EncryptionType: record.EncryptionType } : {}),
  };
}

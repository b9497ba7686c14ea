import { ApplicationFailure } from '@temporalio/activity';
import { KclError } from '../errors';
import { FailureType } from '../failure-types';

const THROTTLING = new Set([
  'ProvisionedThroughputExceededException',
  'KMSThrottlingException',
  'LimitExceededException',
  'ThrottlingException',
  'RequestLimitExceeded',
]);

const ACCESS = new Set([
  'AccessDeniedException',
  'UnrecognizedClientException',
  'KMSAccessDeniedException',
  'KMSDisabledException',
  'KMSInvalidStateException',
  'KMSNotFoundException',
  'KMSOptInRequired',
  'ExpiredTokenException',
]);

/** The AWS error's name (its `code` when it has no name of its own), or 'Error'. */
export function awsErrorName(error: unknown): string {
  if (error && typeof error === 'object') {
    const named = error as { name?: unknown; code?: unknown };
    if (typeof named.name === 'string' && named.name !== 'Error') return named.name;
    if (typeof named.code === 'string') return named.code;
  }
  return 'Error';
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Translates an error from the Kinesis API into the failure the workflow and the retry policies reason about.
 * `what` says what was being done, for the message (e.g. "GetRecords on shardId-000000000001 of stream orders").
 */
export function kinesisFailure(error: unknown, what: string): ApplicationFailure {
  if (error instanceof ApplicationFailure) return error;
  const name = awsErrorName(error);
  const message = `${what}: ${name}: ${errorMessage(error)}`;
  const details = [{ awsError: name }];
  if (name === 'ExpiredIteratorException') {
    return ApplicationFailure.create({
      type: FailureType.ExpiredIterator,
      category: 'BENIGN',
      message,
      nonRetryable: true,
      details,
      cause: error as Error,
    });
  }
  if (THROTTLING.has(name)) {
    return ApplicationFailure.create({ type: FailureType.Throttled, message, details, cause: error as Error });
  }
  if (name === 'ResourceNotFoundException') {
    return ApplicationFailure.create({
      type: FailureType.StreamNotFound,
      message,
      nonRetryable: true,
      details,
      cause: error as Error,
    });
  }
  if (name === 'InvalidArgumentException') {
    return ApplicationFailure.create({
      type: FailureType.InvalidArgument,
      message,
      nonRetryable: true,
      details,
      cause: error as Error,
    });
  }
  if (ACCESS.has(name)) {
    return ApplicationFailure.create({ type: FailureType.AccessDenied, message, details, cause: error as Error });
  }
  return ApplicationFailure.create({ type: name, message, details, cause: error instanceof Error ? error : undefined });
}

/** Non-retryable library errors by name; everything else is retried. */
const NON_RETRYABLE_KCL_ERRORS = new Set<string>([
  FailureType.CheckpointConflict,
  FailureType.LeaseTableSchema,
  FailureType.InvalidLeaseRequest,
  FailureType.InvalidConfig,
  FailureType.CheckpointOutOfRange,
]);

/**
 * Translates an error from the lease table (DynamoDB) into a failure: library errors keep their name as the failure type
 * (CheckpointConflict, LeaseTableSchema, ...), DynamoDB throttling becomes Throttled, the rest is retried.
 */
export function leaseTableFailure(error: unknown, what: string): ApplicationFailure {
  if (error instanceof ApplicationFailure) return error;
  if (error instanceof KclError) {
    return ApplicationFailure.create({
      type: error.name,
      message: `${what}: ${error.message}`,
      nonRetryable: NON_RETRYABLE_KCL_ERRORS.has(error.name),
      cause: error,
    });
  }
  const name = awsErrorName(error);
  const message = `${what}: ${name}: ${errorMessage(error)}`;
  if (THROTTLING.has(name)) {
    return ApplicationFailure.create({ type: FailureType.Throttled, message, cause: error as Error });
  }
  if (ACCESS.has(name)) {
    return ApplicationFailure.create({ type: FailureType.AccessDenied, message, cause: error as Error });
  }
  return ApplicationFailure.create({ type: name, message, cause: error instanceof Error ? error : undefined });
}

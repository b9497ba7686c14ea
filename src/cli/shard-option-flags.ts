/**
 * `start`'s shard consumer options: `--options file.json` (a JSON object of ShardConsumerOptions) and flags for the
 * common ones, which win over the file. Both are validated by the library's own schema (validateShardConsumerOptions),
 * so the CLI reports exactly what `startStreamConsumer` would. Help shows each option's default, taken from the schema.
 */
import { readFileSync } from 'node:fs';
import { type Command, Option } from 'commander';
import { InvalidConfigError } from '../errors';
import { type ShardConsumerOptions, validateShardConsumerOptions } from '../options';
import { formatDuration, parseDuration, parseInteger, parseTimestamp } from './options';

export interface ShardOptionFlags {
  options?: string;
  execution?: ShardConsumerOptions['execution'];
  retrieval?: ShardConsumerOptions['retrieval'];
  consumerName?: string;
  maxIdleWait?: number;
  initialPosition?: ShardConsumerOptions['initialPosition'];
  timestamp?: string;
  maxRecords?: number;
  idleTimeBetweenReads?: number;
  minTimeBetweenReads?: number;
  maxBatchesPerRun?: number;
  processTimeout?: number;
  heartbeatTimeout?: number;
  onProcessingFailure?: ShardConsumerOptions['onProcessingFailure'];
  maxProcessingAttempts?: number;
  deadLetterStream?: string;
  deadLetterTable?: string;
  prefetch?: boolean;
  callProcessRecordsEvenForEmptyRecordList?: boolean;
}

const validated = validateShardConsumerOptions({});
if (!validated.ok) throw new Error('the default shard consumer options do not validate');
const DEFAULTS = validated.options;

const ms = (value: number) => `(default: ${formatDuration(value)})`;

export function addShardOptionFlags(command: Command): Command {
  return command
    .option(
      '--options <file.json>',
      'shard consumer options as JSON (the library\'s ShardConsumerOptions, e.g. {"maxRecords": 500}); flags win over it (default: none)',
    )
    .addOption(
      new Option(
        '--execution <execution>',
        "how batches run: per-batch (each batch a durable step: ~2 Temporal actions a batch, failover in ~2.5 s) or windowed (many batches per activity on the shard's worker: ~0.15 actions a second per busy shard, failover within the window heartbeat timeout) " +
          `(default: ${DEFAULTS.execution})`,
      ).choices(['per-batch', 'windowed']),
    )
    .addOption(
      new Option(
        '--retrieval <retrieval>',
        "how records are read: polling (GetRecords; a shard's 2 MB/s and 5 reads/s are shared by every application on the stream) or fan-out (enhanced fan-out: a SubscribeToShard push stream per shard with 2 MB/s of its own, ~70 ms from put to push; runs windowed; AWS bills it per consumer-shard hour and per GB) " +
          `(default: ${DEFAULTS.retrieval})`,
      ).choices(['polling', 'fan-out']),
    )
    .option(
      '--consumer-name <name>',
      'fan-out: the stream consumer to register (if it does not exist yet) and subscribe through; one per application (default: the application name)',
    )
    .option(
      '--max-idle-wait <duration>',
      `longest a read waits on the worker for records at a quiet shard; a quiet shard costs about one action per this long ${ms(DEFAULTS.maxIdleWaitMs)}`,
      parseDuration,
    )
    .addOption(
      new Option(
        '--initial-position <position>',
        `where shards without a checkpoint start (child shards always start at TRIM_HORIZON) (default: ${DEFAULTS.initialPosition})`,
      ).choices(['LATEST', 'TRIM_HORIZON', 'AT_TIMESTAMP']),
    )
    .option(
      '--timestamp <iso>',
      'start time for --initial-position AT_TIMESTAMP (ISO-8601, e.g. 2026-01-31T12:00:00Z) (default: none)',
      parseTimestamp,
    )
    .option(
      '--max-records <n>',
      `most records per GetRecords call (1-10000) (default: ${DEFAULTS.maxRecords})`,
      parseInteger(1, 10_000),
    )
    .option(
      '--idle-time-between-reads <duration>',
      `how often a quiet shard is polled for new records (on the worker) ${ms(DEFAULTS.idleTimeBetweenReadsMs)}`,
      parseDuration,
    )
    .option(
      '--min-time-between-reads <duration>',
      `least time between two reads of a shard ${ms(DEFAULTS.minTimeBetweenReadsMs)}`,
      parseDuration,
    )
    .option(
      '--max-batches-per-run <n>',
      `batches per workflow run before continue-as-new (default: ${DEFAULTS.maxBatchesPerRun})`,
      parseInteger(1, 100_000),
    )
    .option(
      '--process-timeout <duration>',
      `longest one processRecords call may take ${ms(DEFAULTS.processTimeoutMs)}`,
      parseDuration,
    )
    .option(
      '--heartbeat-timeout <duration>',
      `a worker silent this long is presumed dead ${ms(DEFAULTS.heartbeatTimeoutMs)}`,
      parseDuration,
    )
    .addOption(
      new Option(
        '--on-processing-failure <action>',
        `after the last failed attempt: halt the shard or dead-letter and continue (default: ${DEFAULTS.onProcessingFailure})`,
      ).choices(['HALT', 'DEAD_LETTER']),
    )
    .option(
      '--max-processing-attempts <n>',
      `processRecords attempts before --on-processing-failure applies; 0 = forever (default: ${DEFAULTS.processingRetry.maximumAttempts})`,
      parseInteger(0, 1_000_000),
    )
    .option('--dead-letter-stream <name>', 'dead-letter destination: a Kinesis stream (default: none)')
    .option('--dead-letter-table <name>', 'dead-letter destination: a DynamoDB table (default: none)')
    .option('--no-prefetch', 'do not read the next batch while one is processed (default: prefetch on)')
    .option(
      '--call-process-records-even-for-empty-record-list',
      'call processRecords with empty batches too (default: off)',
    );
}

function readOptionsFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new InvalidConfigError(
      `--options ${path}: cannot read it (${(error as NodeJS.ErrnoException).code ?? String(error)})`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new InvalidConfigError(
      `--options ${path}: not valid JSON (${error instanceof Error ? error.message : String(error)})`,
    );
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new InvalidConfigError(`--options ${path}: expected a JSON object of shard consumer options`);
  }
  return parsed as Record<string, unknown>;
}

/** The shard consumer options of the file and the flags (flags win), validated with the library's schema. */
export function shardOptionsFromFlags(flags: ShardOptionFlags): ShardConsumerOptions {
  const file = flags.options ? readOptionsFile(flags.options) : {};
  if (flags.options) {
    const fileValidation = validateShardConsumerOptions(file);
    if (!fileValidation.ok) {
      throw new InvalidConfigError(
        `--options ${flags.options}: invalid shard options: ${fileValidation.issues.join('; ')}`,
        fileValidation.issues,
      );
    }
  }
  const fileRetry = (file.processingRetry ?? {}) as Record<string, unknown>;
  const merged: Record<string, unknown> = {
    ...file,
    ...(flags.execution ? { execution: flags.execution } : {}),
    ...(flags.retrieval ? { retrieval: flags.retrieval } : {}),
    ...(flags.consumerName !== undefined ? { consumerName: flags.consumerName } : {}),
    ...(flags.maxIdleWait !== undefined ? { maxIdleWaitMs: flags.maxIdleWait } : {}),
    ...(flags.initialPosition ? { initialPosition: flags.initialPosition } : {}),
    ...(flags.timestamp ? { initialPositionTimestamp: flags.timestamp } : {}),
    ...(flags.maxRecords !== undefined ? { maxRecords: flags.maxRecords } : {}),
    ...(flags.idleTimeBetweenReads !== undefined ? { idleTimeBetweenReadsMs: flags.idleTimeBetweenReads } : {}),
    ...(flags.minTimeBetweenReads !== undefined ? { minTimeBetweenReadsMs: flags.minTimeBetweenReads } : {}),
    ...(flags.maxBatchesPerRun !== undefined ? { maxBatchesPerRun: flags.maxBatchesPerRun } : {}),
    ...(flags.processTimeout !== undefined ? { processTimeoutMs: flags.processTimeout } : {}),
    ...(flags.heartbeatTimeout !== undefined ? { heartbeatTimeoutMs: flags.heartbeatTimeout } : {}),
    ...(flags.onProcessingFailure ? { onProcessingFailure: flags.onProcessingFailure } : {}),
    ...(flags.maxProcessingAttempts !== undefined
      ? { processingRetry: { ...fileRetry, maximumAttempts: flags.maxProcessingAttempts } }
      : {}),
    ...(flags.deadLetterStream ? { deadLetter: { type: 'KINESIS', streamName: flags.deadLetterStream } } : {}),
    ...(flags.deadLetterTable ? { deadLetter: { type: 'DYNAMODB', tableName: flags.deadLetterTable } } : {}),
    ...(flags.prefetch === false ? { prefetch: false } : {}),
    ...(flags.callProcessRecordsEvenForEmptyRecordList ? { callProcessRecordsEvenForEmptyRecordList: true } : {}),
  };
  if (flags.deadLetterStream && flags.deadLetterTable) {
    throw new InvalidConfigError('--dead-letter-stream and --dead-letter-table: choose one dead-letter destination');
  }
  const validation = validateShardConsumerOptions(merged);
  if (!validation.ok) {
    throw new InvalidConfigError(`invalid shard options: ${validation.issues.join('; ')}`, validation.issues);
  }
  // The options as given (defaults are applied by the workflow), so the history shows what the user set.
  return merged;
}

/**
 * Messages between the benchmark and its child processes (a temporal-kcl worker, a raw GetRecords loop), over Node's
 * IPC channel. Times are `Date.now()` of the process that sends them (one machine, one clock).
 */

/** Endpoints of the local stack a child process connects to. */
export interface StackEndpoints {
  temporalAddress: string;
  namespace: string;
  kinesisEndpoint: string;
  dynamoDbEndpoint: string;
}

/** How the worker child's record processor treats a batch. */
export type ProcessorMode =
  /** Counts records and bytes, checkpoints the end of every batch. */
  | 'count'
  /** As `count`, and reads the put time (13 ASCII digits, epoch ms) that starts every record's data to report lag. */
  | 'lag'
  /** As `lag`, and reports every record's lag (`lagsMs`), for percentiles. */
  | 'latency';

export interface WorkerChildConfig extends StackEndpoints {
  taskQueue: string;
  processorMode: ProcessorMode;
  /** createKclWorker's option; undefined keeps the library default. */
  stickyQueueScheduleToStartTimeoutMs?: number;
}

export interface BatchReport {
  type: 'batch';
  applicationName: string;
  streamName: string;
  shardId: string;
  /** User records in the batch. */
  records: number;
  /** Bytes of user-record data. */
  bytes: number;
  /** When processRecords was called. */
  at: number;
  /** `lag` mode: put → processRecords, over the batch's records (ms). */
  lagMaxMs?: number;
  lagSumMs?: number;
  /** `latency` mode: put → processRecords of every record of the batch, in order (ms). */
  lagsMs?: number[];
}

export interface WorkerCallCounts {
  /** AWS SDK commands sent by the worker's clients, by command name (e.g. `UpdateItemCommand`). */
  commands: Record<string, number>;
}

export type WorkerChildMessage =
  | { type: 'ready'; workerQueue: string }
  | { type: 'initialize'; applicationName: string; streamName: string; shardId: string; at: number }
  | BatchReport
  | ({ type: 'calls'; requestId: number } & WorkerCallCounts);

export type WorkerChildCommand = { type: 'calls'; requestId: number };

/** One read of a whole pre-filled shard by the raw AWS-SDK loop. */
export interface RawReadRequest {
  type: 'read';
  requestId: number;
  streamName: string;
  shardId: string;
  /** User records to read before stopping. */
  expectedRecords: number;
  /** GetRecords `Limit`. */
  limit: number;
  /** Also drop user records of aggregates outside this range, as temporal-kcl (and Java KCL) do. */
  hashKeyRange?: { startingHashKey: string; endingHashKey: string };
}

export interface RawReadResult {
  type: 'read';
  requestId: number;
  /** GetShardIterator → the last batch de-aggregated. */
  elapsedMs: number;
  /** GetShardIterator → the first batch de-aggregated, and its user records. */
  firstBatchMs: number;
  firstBatchRecords: number;
  records: number;
  bytes: number;
  getRecordsCalls: number;
  /** CPU time the reading process spent (user + system), ms. */
  cpuMs: number;
  error?: string;
}

export type RawReaderMessage = { type: 'ready' } | RawReadResult;

/** The emulator process (bench/kinesalite-process.ts) tells where it listens. */
export type EmulatorMessage = { type: 'ready'; endpoint: string };

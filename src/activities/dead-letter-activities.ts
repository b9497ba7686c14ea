import { ApplicationFailure } from '@temporalio/activity';
import type { DeadLetterDestination, ShardRef } from '../consumer-types';
import { FailureType } from '../failure-types';
import type { Checkpoint, ExtendedSequenceNumber } from '../positions';
import type { KinesisRecord } from '../record-processor';
import type { BatchCache } from './batch-cache';
import type { createDeadLetterWriter, DeadLetterEntry } from './dead-letter';
import { withHeartbeats } from './heartbeat';
import { countRetry, shardMetrics } from './metrics';
import { HostRefusedError, type ProcessorHost } from './processor-host';
import { RangeCheckpointer } from './range-checkpointer';

export interface DeadLetterActivityDeps {
  host: ProcessorHost;
  cache: BatchCache;
  writeDeadLetters: ReturnType<typeof createDeadLetterWriter>;
}

export interface DeadLetterBatchInput {
  ref: ShardRef;
  pin: string;
  handle: string;
  destination: DeadLetterDestination;
  /** RECORD: deliver the records one by one and dead-letter only those that fail alone; BATCH: dead-letter all. */
  granularity: 'RECORD' | 'BATCH';
  /** The batch's last error, kept with each dead-lettered record. */
  error: string;
  lastCheckpoint?: Checkpoint;
}

export interface DeadLetterOutcome {
  deadLettered: number;
  /** Bytes of data of the dead-lettered records (not counted as processed). */
  deadLetteredBytes: number;
  delivered: number;
  first?: ExtendedSequenceNumber;
  last?: ExtendedSequenceNumber;
  /** A checkpoint the processor asked for while records were delivered one by one. */
  checkpoint?: ExtendedSequenceNumber;
}

function position(record: KinesisRecord): ExtendedSequenceNumber {
  return record.subSequenceNumber === undefined
    ? { sequenceNumber: record.sequenceNumber }
    : { sequenceNumber: record.sequenceNumber, subSequenceNumber: record.subSequenceNumber };
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** The activity that gives up on a batch that kept failing: it goes (whole, or record by record) to the dead-letter destination. */
export function createDeadLetterActivities({ host, cache, writeDeadLetters }: DeadLetterActivityDeps) {
  return {
    async deadLetterBatch(input: DeadLetterBatchInput): Promise<DeadLetterOutcome> {
      countRetry(input.ref);
      try {
        return await withHeartbeats(() =>
          host.process<DeadLetterOutcome>(input.ref, input.pin, `${input.handle}#dead-letter`, async (processor) => {
            const batch = cache.get(input.handle);
            if (!batch) {
              throw ApplicationFailure.create({
                type: FailureType.BatchLost,
                message: `batch ${input.handle} of ${input.ref.shardId} is no longer in this worker's memory; it will be read again`,
                nonRetryable: true,
              });
            }
            const failed: { record: KinesisRecord; error: string }[] = [];
            let checkpoint: ExtendedSequenceNumber | undefined;
            if (input.granularity === 'BATCH') {
              failed.push(...batch.records.map((record) => ({ record, error: input.error })));
            } else {
              for (const record of batch.records) {
                const checkpointer = new RangeCheckpointer(
                  input.ref.shardId,
                  checkpoint ?? input.lastCheckpoint,
                  position(record),
                  [record],
                );
                try {
                  await processor.processRecords({
                    records: [record],
                    millisBehindLatest: batch.millisBehindLatest,
                    checkpointer,
                    cacheEntryTime: new Date(batch.readAt),
                    cacheExitTime: new Date(),
                  });
                  checkpoint = checkpointer.checkpointRequested ?? checkpoint;
                } catch (error) {
                  failed.push({ record, error: describe(error) });
                }
              }
            }
            const deadLetteredAt = new Date();
            const entries: DeadLetterEntry[] = failed.map(({ record, error }) => ({
              ...input.ref,
              record,
              error,
              deadLetteredAt,
            }));
            try {
              await writeDeadLetters(input.destination, entries);
            } catch (error) {
              throw ApplicationFailure.create({
                type: FailureType.DeadLetterFailed,
                message: `writing ${entries.length} records of ${input.ref.shardId} to the dead-letter destination failed: ${describe(error)}`,
              });
            }
            const deadLetteredBytes = failed.reduce((sum, { record }) => sum + record.data.byteLength, 0);
            const metrics = shardMetrics(input.ref);
            metrics.deadLettered(entries.length);
            metrics.recordsProcessed(batch.records.length - entries.length);
            metrics.bytesProcessed(batch.bytes - deadLetteredBytes);
            cache.release(input.handle);
            const first = failed[0];
            const last = failed.at(-1);
            return {
              deadLettered: entries.length,
              deadLetteredBytes,
              delivered: batch.records.length - entries.length,
              ...(first ? { first: position(first.record) } : {}),
              ...(last ? { last: position(last.record) } : {}),
              ...(checkpoint ? { checkpoint } : {}),
            };
          }),
        );
      } catch (error) {
        if (error instanceof HostRefusedError) {
          throw ApplicationFailure.create({
            type: error.refusal === 'DRAINING' ? FailureType.WorkerDraining : FailureType.ProcessorLost,
            message: error.message,
            nonRetryable: true,
          });
        }
        throw error;
      }
    },
  };
}

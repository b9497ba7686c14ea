import { ApplicationFailure } from '@temporalio/activity';
import type { DeadLetterDestination, ShardRef } from '../consumer-types';
import { FailureType } from '../failure-types';
import { type Checkpoint, type ExtendedSequenceNumber, positionOf } from '../positions';
import type { KinesisRecord, RecordProcessor } from '../record-processor';
import type { BatchCache, CachedBatch } from './batch-cache';
import type { createDeadLetterWriter, DeadLetterEntry } from './dead-letter';
import { withHeartbeats } from './heartbeat';
import { countRetry, shardMetrics } from './metrics';
import { HostRefusedError, type ProcessorHost, refusalFailure } from './processor-host';
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
  /** A checkpoint the processor asked for while records were delivered one by one (the workflow writes it). */
  checkpoint?: ExtendedSequenceNumber;
  /** The newest lease counter this worker reached for the pin (its failed attempts may have checkpointed). */
  counter?: number;
}

/** The records of a batch that failed alone, and the checkpoint asked for while the others were delivered one by one. */
interface Triage {
  failed: { record: KinesisRecord; error: string }[];
  checkpoint?: ExtendedSequenceNumber;
}

/** Sorted batches kept for a retried write (a worker holds at most a couple per shard). */
const MAX_SORTED = 1_000;

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/**
 * Which records of a batch go to the dead-letter destination: all of them (BATCH), or those that fail when delivered
 * alone (RECORD), with the checkpoint the processor asked for meanwhile.
 */
async function sortBatch(processor: RecordProcessor, batch: CachedBatch, input: DeadLetterBatchInput): Promise<Triage> {
  if (input.granularity === 'BATCH') return { failed: batch.records.map((record) => ({ record, error: input.error })) };
  const failed: Triage['failed'] = [];
  let checkpoint: ExtendedSequenceNumber | undefined;
  for (const record of batch.records) {
    const checkpointer = new RangeCheckpointer(
      input.ref.shardId,
      checkpoint ?? input.lastCheckpoint,
      positionOf(record),
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
  return { failed, ...(checkpoint ? { checkpoint } : {}) };
}

/** The activity that gives up on a batch that kept failing: it goes (whole, or record by record) to the dead-letter destination. */
export function createDeadLetterActivities({ host, cache, writeDeadLetters }: DeadLetterActivityDeps) {
  /**
   * Batches whose records were already sorted (re-delivered one by one) but not yet written to the destination, by
   * handle: a retried write does not deliver the records that succeeded to the processor again.
   */
  const sorted = new Map<string, Triage>();
  return {
    async deadLetterBatch(input: DeadLetterBatchInput): Promise<DeadLetterOutcome> {
      countRetry(input.ref);
      try {
        return await withHeartbeats(() =>
          host.process<DeadLetterOutcome>(input.ref, input.pin, `${input.handle}#dead-letter`, async (processor) => {
            const batch = cache.require(input.handle, input.ref.shardId);
            let triage = sorted.get(input.handle); // set when an earlier attempt's write failed
            if (!triage) {
              triage = await sortBatch(processor, batch, input);
              sorted.set(input.handle, triage);
              while (sorted.size > MAX_SORTED) sorted.delete(sorted.keys().next().value as string);
            }
            const { failed, checkpoint } = triage;
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
            sorted.delete(input.handle);
            const first = failed[0];
            const last = failed.at(-1);
            return {
              deadLettered: entries.length,
              deadLetteredBytes,
              delivered: batch.records.length - entries.length,
              ...(first ? { first: positionOf(first.record) } : {}),
              ...(last ? { last: positionOf(last.record) } : {}),
              ...(checkpoint ? { checkpoint } : {}),
              ...(host.leaseCounter(input.ref, input.pin) !== undefined
                ? { counter: host.leaseCounter(input.ref, input.pin) }
                : {}),
            };
          }),
        );
      } catch (error) {
        throw error instanceof HostRefusedError ? refusalFailure(error) : error;
      }
    },
  };
}

/**
 * An example record processor: logs each batch and checkpoints after it. Run it with
 * `temporal-kcl worker --processor dist/examples/logging-processor.js` (or the .ts file with the TypeScript sources).
 */
import type { RecordProcessor, RecordProcessorFactory } from '../record-processor';

const createLoggingProcessor: RecordProcessorFactory = ({ applicationName, streamName, shardId }): RecordProcessor => {
  const prefix = `[${applicationName}/${streamName}/${shardId}]`;
  let records = 0;
  return {
    initialize({ startingPosition }) {
      console.log(
        `${prefix} starting at ${typeof startingPosition === 'string' ? startingPosition : startingPosition.sequenceNumber}`,
      );
    },
    async processRecords({ records: batch, millisBehindLatest, checkpointer }) {
      records += batch.length;
      const first = batch[0];
      const last = batch.at(-1);
      if (first && last) {
        console.log(
          `${prefix} ${batch.length} records ${first.sequenceNumber}..${last.sequenceNumber} (${records} in all, ${millisBehindLatest} ms behind)`,
        );
      }
      // Everything in the batch is handled: the next start (or another worker) resumes after it.
      await checkpointer.checkpoint();
    },
    async shutdown(input) {
      console.log(`${prefix} shutdown ${input.reason} after ${records} records`);
      // At shard end (TERMINATE) or on a requested stop, record that everything delivered is done.
      if (input.checkpointer) await input.checkpointer.checkpoint();
    },
  };
};

export default createLoggingProcessor;

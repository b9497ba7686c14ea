/**
 * 7. CPU per record (issue 9): a single-shard drain of pre-filled 1 KB records from TRIM_HORIZON (shard consumer with
 * default options and a no-op processor that checkpoints every batch), per execution; CPU seconds (user + system, from
 * /proc/<pid>/stat) per million records for the worker process and for the Temporal dev server, each over the drain
 * (start request → last record processed). A warm-up drain on the same worker comes first, so one-time start-up costs
 * (workflow bundle, JIT) do not count. With BENCH_CPU_PROF=<dir> the worker writes a V8 CPU profile there when it stops:
 * the log names its pid.
 */
import { cpuSeconds } from './lib/children';
import type { BenchContext } from './lib/context';
import { EXECUTIONS, type Execution, executionOptions, executionUnavailable } from './lib/executions';
import { createStream, deleteStream, prefill, uniqueName } from './lib/kinesis';
import { runShardConsumer } from './lib/shard-run';
import { round } from './lib/stats';

/**
 * The Go original's worker CPU for the same drain (300,000 × 1 KB records from the emulator), measured by the issue's
 * author on this machine type: the reference for the windowed execution's target.
 */
export const GO_ORIGINAL_CPU_SECONDS_PER_MILLION = 33.8;

const RECORD_BYTES = 1024;

export interface CpuCase {
  execution: Execution;
  available: boolean;
  unavailable?: string;
  records?: number;
  batches?: number;
  /** Start request → the last record's processRecords. */
  elapsedMs?: number;
  recordsPerSec?: number;
  workerCpuSeconds?: number;
  temporalCpuSeconds?: number | null;
  workerCpuSecondsPerMillion?: number;
  temporalCpuSecondsPerMillion?: number | null;
  /** Worker + Temporal server. */
  totalCpuSecondsPerMillion?: number | null;
  /** The worker process (its V8 profile is named after it with BENCH_CPU_PROF). */
  workerPid?: number;
  /** Windowed only: worker CPU ≤ the Go original's. */
  target?: { text: string; limit: number; value: number; met: boolean };
}

export interface CpuResult {
  emulator: string;
  records: number;
  recordBytes: number;
  warmUpRecords: number;
  goOriginalCpuSecondsPerMillion: number;
  cases: CpuCase[];
}

async function drain(
  context: BenchContext,
  execution: Execution,
  worker: Awaited<ReturnType<BenchContext['startWorker']>>,
  taskQueue: string,
  records: number,
) {
  const { streamName, shards } = await createStream(context.kinesis, 1, `bench-cpu-${execution}`);
  try {
    const filledAt = Date.now();
    await prefill(context.kinesis, streamName, { kind: 'plain', recordBytes: RECORD_BYTES }, records);
    context.log(`  ${execution}: ${records} × ${RECORD_BYTES} B records pre-filled in ${Date.now() - filledAt} ms`);
    const temporalPid = context.stack.temporal.pid;
    const temporalBefore = temporalPid ? cpuSeconds(temporalPid) : Number.NaN;
    let temporalCpu = Number.NaN;
    const run = await runShardConsumer(context, {
      worker,
      taskQueue,
      streamName,
      shard: shards[0]!,
      expectedRecords: records,
      options: { initialPosition: 'TRIM_HORIZON', ...executionOptions(execution) },
      // Called right after the last record, when the worker's CPU was read.
      beforeStop: async () => {
        temporalCpu = temporalPid ? cpuSeconds(temporalPid) - temporalBefore : Number.NaN;
      },
      timeoutMs: 900_000,
    });
    return { run, temporalCpu };
  } finally {
    await deleteStream(context.kinesis, streamName);
  }
}

export async function measureCpu(context: BenchContext): Promise<CpuResult> {
  const records = context.settings.quick ? 30_000 : 300_000;
  const warmUpRecords = context.settings.quick ? 2_000 : 10_000;
  const cases: CpuCase[] = [];
  for (const execution of context.settings.executions ?? EXECUTIONS) {
    const unavailable = executionUnavailable(execution);
    if (unavailable) {
      context.log(`  ${execution}: ${unavailable}`);
      cases.push({ execution, available: false, unavailable });
      continue;
    }
    const taskQueue = uniqueName('bench-cpu');
    const worker = await context.startWorker({ name: `cpu-${execution}`, processorMode: 'count', taskQueue });
    try {
      if (process.env.BENCH_CPU_PROF) {
        context.log(`  ${execution}: worker pid ${worker.pid} (its CPU profile goes to ${process.env.BENCH_CPU_PROF})`);
      }
      await drain(context, execution, worker, taskQueue, warmUpRecords);
      const { run, temporalCpu } = await drain(context, execution, worker, taskQueue, records);
      const perMillion = (seconds: number) => round((seconds * 1_000_000) / run.records, 1);
      const workerPerMillion = perMillion(run.workerCpuSeconds);
      const temporalPerMillion = Number.isFinite(temporalCpu) ? perMillion(temporalCpu) : null;
      const cpuCase: CpuCase = {
        execution,
        available: true,
        records: run.records,
        batches: run.batches,
        elapsedMs: run.elapsedMs,
        recordsPerSec: round(run.records / (run.elapsedMs / 1_000), 0),
        workerCpuSeconds: round(run.workerCpuSeconds, 2),
        temporalCpuSeconds: Number.isFinite(temporalCpu) ? round(temporalCpu, 2) : null,
        workerCpuSecondsPerMillion: workerPerMillion,
        temporalCpuSecondsPerMillion: temporalPerMillion,
        totalCpuSecondsPerMillion: temporalPerMillion === null ? null : round(workerPerMillion + temporalPerMillion, 1),
        workerPid: worker.pid,
        ...(execution === 'windowed'
          ? {
              target: {
                text: `worker ≤ the Go original's ${GO_ORIGINAL_CPU_SECONDS_PER_MILLION} CPU-s per million records`,
                limit: GO_ORIGINAL_CPU_SECONDS_PER_MILLION,
                value: workerPerMillion,
                met: workerPerMillion <= GO_ORIGINAL_CPU_SECONDS_PER_MILLION,
              },
            }
          : {}),
      };
      context.log(
        `  ${execution}: ${run.records} records in ${run.batches} batches, ${cpuCase.elapsedMs} ms (${cpuCase.recordsPerSec} rec/s); ` +
          `CPU-s per million records: worker ${workerPerMillion}, Temporal server ${temporalPerMillion ?? '?'} ` +
          `(Go original, for reference: ${GO_ORIGINAL_CPU_SECONDS_PER_MILLION})`,
      );
      cases.push(cpuCase);
    } finally {
      // SIGTERM: with BENCH_CPU_PROF the worker writes its profile now.
      await worker.stop();
    }
  }
  return {
    emulator: `${context.stack.kinesisEmulator} (in the benchmark process)`,
    records,
    recordBytes: RECORD_BYTES,
    warmUpRecords,
    goOriginalCpuSecondsPerMillion: GO_ORIGINAL_CPU_SECONDS_PER_MILLION,
    cases,
  };
}

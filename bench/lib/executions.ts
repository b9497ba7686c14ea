/**
 * The shard consumer's executions (issue 9): `per-batch` (every Kinesis batch a durable step of the workflow, the
 * default) and `windowed` (one activity pinned to the shard's worker runs many batches in-process). The benchmark
 * measures both; a build whose options do not know `execution` yet reports `windowed` as not available instead of
 * failing the run.
 */
import { type ShardConsumerOptions, validateShardConsumerOptions } from '../../src/options';

export const EXECUTIONS = ['per-batch', 'windowed'] as const;
export type Execution = (typeof EXECUTIONS)[number];

/** Parses `per-batch,windowed`; throws a clear error on anything else. */
export function parseExecutions(list: string): Execution[] {
  const names = list.split(',').filter(Boolean);
  const unknown = names.filter((name) => !(EXECUTIONS as readonly string[]).includes(name));
  if (names.length === 0 || unknown.length > 0) {
    throw new Error(`--executions takes a comma-separated list of ${EXECUTIONS.join(', ')}; got '${list}'`);
  }
  return [...new Set(names)] as Execution[];
}

/**
 * The shard options that select `execution`: none for `per-batch` (the default, so it runs on builds that predate the
 * option), `{ execution }` otherwise.
 */
export function executionOptions(execution: Execution): ShardConsumerOptions {
  // Typed loosely on purpose: builds before issue 9 have no `execution` in ShardConsumerOptions.
  return execution === 'per-batch' ? {} : ({ execution });
}

/** The error a build without the option gives: "unknown option(s): execution". */
export function isUnknownExecutionOption(error: unknown): boolean {
  const message = error instanceof Error ? error.message : String(error);
  return /unknown option\(s\):[^;]*\bexecution\b/.test(message);
}

export const NOT_AVAILABLE = 'not available in this build (shard options: unknown option(s): execution)';

/**
 * Why this build cannot run `execution` (the options' own validation, as the client and the workflow apply it), or
 * undefined if it can.
 */
export function executionUnavailable(execution: Execution): string | undefined {
  const validation = validateShardConsumerOptions(executionOptions(execution));
  if (validation.ok) return undefined;
  return isUnknownExecutionOption(new Error(validation.issues.join('; ')))
    ? NOT_AVAILABLE
    : validation.issues.join('; ');
}

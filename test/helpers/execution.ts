/**
 * The execution the suite runs under: `npm test` runs the suites that start consumers once per execution
 * (TEMPORAL_KCL_TEST_EXECUTION=per-batch, then windowed), so every test of them checks both, with no copy of a test.
 * Consumers started through the test client get it through a client interceptor; CLI starts through a flag.
 */
import type { WorkflowClientInterceptor } from '@temporalio/client';
import type { Execution } from '../../src/options';

/**
 * The execution under test, if the run chose one other than the library's default (per-batch runs test the default as
 * users get it: nothing is added).
 */
export function testExecution(): Execution | undefined {
  const value = process.env.TEMPORAL_KCL_TEST_EXECUTION;
  if (value === undefined || value === '') return undefined;
  if (value !== 'per-batch' && value !== 'windowed') {
    throw new Error(`TEMPORAL_KCL_TEST_EXECUTION must be per-batch or windowed, got '${value}'`);
  }
  return value === 'per-batch' ? undefined : value;
}

/**
 * The retrieval under test: `npm test` runs a selection of the suites a third time with enhanced fan-out
 * (TEMPORAL_KCL_TEST_RETRIEVAL=fan-out, with the windowed execution it runs in), Kinesis reached through the dev
 * stack's fan-out front (see stack.ts).
 */
export function testRetrieval(): 'fan-out' | undefined {
  const value = process.env.TEMPORAL_KCL_TEST_RETRIEVAL;
  if (value === undefined || value === '' || value === 'polling') return undefined;
  if (value !== 'fan-out') throw new Error(`TEMPORAL_KCL_TEST_RETRIEVAL must be polling or fan-out, got '${value}'`);
  return value;
}

type Options = Record<string, unknown> | undefined;

/**
 * The options with the execution under test, unless the test chose one itself. Windows last 2 s in tests (unless the
 * test says otherwise): progress is reported at each window's end, and short windows hand over often.
 */
function withExecution(options: Options, execution: Execution | undefined): Record<string, unknown> {
  const retrieval = testRetrieval();
  const withRetrieval = retrieval && !(options && 'retrieval' in options) ? { retrieval } : {};
  if (!execution || (options && 'execution' in options)) return { ...options, ...withRetrieval };
  return {
    ...(execution === 'windowed' ? { windowDurationMs: 2_000 } : {}),
    ...options,
    execution,
    ...withRetrieval,
  };
}

/**
 * Adds the execution under test to shard consumers and stream consumers started through the client (a stream
 * consumer passes it on to its shard consumers).
 */
export function executionInterceptor(): WorkflowClientInterceptor | undefined {
  const execution = testExecution();
  if (!execution && !testRetrieval()) return undefined;
  return {
    async start(input, next) {
      const [first, ...rest] = input.options.args as [Record<string, unknown> | undefined, ...unknown[]];
      if (!first || typeof first !== 'object') return next(input);
      let arg = first;
      if (input.workflowType === 'shardConsumerWorkflow') {
        arg = { ...first, options: withExecution(first.options as Options, execution) };
      } else if (input.workflowType === 'streamConsumerWorkflow') {
        arg = { ...first, shardOptions: withExecution(first.shardOptions as Options, execution) };
      }
      return next({ ...input, options: { ...input.options, args: [arg, ...rest] } });
    },
  };
}

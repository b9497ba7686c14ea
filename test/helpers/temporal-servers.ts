import { installQuietRuntime } from './runtime';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { resolveTemporalCli, resolveTestServer } from '../../src/dev/tools';
import { KCL_SEARCH_ATTRIBUTES } from '../../src/search-attributes';

/**
 * A time-skipping environment on the Java test server the project provisions (or the SDK's download when there is
 * no Java/Maven and the machine has internet).
 */
export async function createTimeSkippingEnv(): Promise<TestWorkflowEnvironment> {
  installQuietRuntime();
  const testServer = await resolveTestServer();
  return TestWorkflowEnvironment.createTimeSkipping(
    testServer.path ? { server: { executable: { type: 'existing-path', path: testServer.path } } } : {},
  );
}

/**
 * A fresh Temporal CLI dev server started by the SDK (createLocal) from the project's own build of the CLI, with extra
 * `server start-dev` arguments if given (e.g. `--dynamic-config-value KEY=JSON`).
 */
export async function createLocalEnv(extraArgs: string[] = []): Promise<TestWorkflowEnvironment> {
  installQuietRuntime();
  const cli = await resolveTemporalCli();
  return TestWorkflowEnvironment.createLocal({
    server: {
      ip: '127.0.0.1',
      searchAttributes: [...KCL_SEARCH_ATTRIBUTES],
      ...(extraArgs.length > 0 ? { extraArgs } : {}),
      ...(cli.path ? { executable: { type: 'existing-path', path: cli.path } } : {}),
    },
  });
}

import { join, resolve } from 'node:path';
import type { WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { cachedWorkflowBundle } from '../../src/workflow-bundle-cache';

const root = resolve(__dirname, '..', '..');

/**
 * Bundles workflow code once per source change and keeps it on disk (node_modules/.cache/temporal-kcl, the cache
 * workers started from source use too), so the many test files that start workers do not each pay webpack's seconds.
 */
export function workflowBundle(
  workflowsPath: string = join(root, 'src', 'workflows', 'index.ts'),
): Promise<WorkflowBundleWithSourceMap> {
  return cachedWorkflowBundle(workflowsPath);
}

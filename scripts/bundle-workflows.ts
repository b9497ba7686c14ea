/**
 * Bundles the workflow code into dist/workflow-bundle.js at build time, so workers start without running webpack
 * (createKclWorker uses the bundle when it sits next to it).
 */
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';

async function main() {
  const root = resolve(__dirname, '..');
  const { code } = await bundleWorkflowCode({ workflowsPath: join(root, 'src', 'workflows', 'index.ts') });
  const target = join(root, 'dist', 'workflow-bundle.js');
  writeFileSync(target, code);
  console.log(`wrote ${target} (${(code.length / 1024).toFixed(0)} KiB)`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});

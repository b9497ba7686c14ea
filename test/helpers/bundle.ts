import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { bundleWorkflowCode, type WorkflowBundleWithSourceMap } from '@temporalio/worker';

const root = resolve(__dirname, '..', '..');

function sourceFingerprint(entry: string): string {
  const hash = createHash('sha256');
  const visit = (path: string) => {
    if (statSync(path).isDirectory()) {
      for (const name of readdirSync(path).sort()) visit(join(path, name));
    } else if (path.endsWith('.ts')) {
      hash.update(path).update(readFileSync(path));
    }
  };
  visit(join(root, 'src'));
  visit(entry);
  hash.update(readFileSync(join(root, 'node_modules', '@temporalio', 'workflow', 'package.json')));
  return hash.digest('hex').slice(0, 16);
}

/**
 * Bundles workflow code once per source change and keeps it on disk (node_modules/.cache), so the many test files that
 * start workers do not each pay webpack's seconds.
 */
export async function workflowBundle(
  workflowsPath: string = join(root, 'src', 'workflows', 'index.ts'),
): Promise<WorkflowBundleWithSourceMap> {
  const entry = resolve(workflowsPath);
  const file = join(root, 'node_modules', '.cache', 'temporal-kcl', `workflows-${sourceFingerprint(entry)}.json`);
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as WorkflowBundleWithSourceMap;
  const bundle = await bundleWorkflowCode({ workflowsPath: entry });
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(bundle));
  return bundle;
}

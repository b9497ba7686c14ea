/**
 * The workflow code a worker loads, without running webpack at start-up whenever it can: the bundle `npm run build`
 * writes (dist/workflow-bundle.js), else a bundle cached on disk under a fingerprint of the source
 * (node_modules/.cache/temporal-kcl), else webpack now (the result is cached for the next start).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { WorkflowBundleWithSourceMap } from '@temporalio/worker';

/** src/ (run from source) or dist/ (compiled): the directory this module and the workflows live in. */
const codeRoot = __dirname;
/** The package's root (holds package.json and node_modules). */
const packageRoot = resolve(codeRoot, '..');

/** Where cached bundles live. */
export const WORKFLOW_BUNDLE_CACHE_DIR = join(packageRoot, 'node_modules', '.cache', 'temporal-kcl');

/** The bundle `npm run build` writes next to the compiled code. */
const PREBUILT_BUNDLE = join(codeRoot, 'workflow-bundle.js');

const SOURCE = /\.(ts|js|mjs|cjs)$/;

/**
 * A fingerprint of everything a workflow bundle is made of: the code under src (or dist), the entry (which may live
 * elsewhere, e.g. a test fixture), and the version of @temporalio/workflow.
 */
function sourceFingerprint(entry: string): string {
  const hash = createHash('sha256');
  const visit = (path: string) => {
    if (statSync(path).isDirectory()) {
      for (const name of readdirSync(path).sort()) visit(join(path, name));
    } else if (SOURCE.test(path) && !path.endsWith('.d.ts')) {
      hash.update(path).update(readFileSync(path));
    }
  };
  visit(codeRoot);
  if (!entry.startsWith(codeRoot)) visit(entry);
  hash.update(readFileSync(require.resolve('@temporalio/workflow/package.json')));
  return hash.digest('hex').slice(0, 16);
}

/** Cached bundles kept (3 MB each): the most recently made; older ones are of source that has changed since. */
const KEPT_BUNDLES = 8;

/** Deletes all but the {@link KEPT_BUNDLES} newest cached bundles. */
function pruneCache(): void {
  const bundles = readdirSync(WORKFLOW_BUNDLE_CACHE_DIR)
    .filter((name) => /^workflows-[0-9a-f]+\.json$/.test(name))
    .map((name) => join(WORKFLOW_BUNDLE_CACHE_DIR, name))
    .map((path) => ({ path, modified: statSync(path).mtimeMs }))
    .sort((a, b) => b.modified - a.modified);
  for (const old of bundles.slice(KEPT_BUNDLES)) rmSync(old.path, { force: true });
}

/** The bundle of `workflowsPath`: from the cache when the source did not change since it was made, else made now. */
export async function cachedWorkflowBundle(workflowsPath: string): Promise<WorkflowBundleWithSourceMap> {
  const entry = resolve(workflowsPath);
  const file = join(WORKFLOW_BUNDLE_CACHE_DIR, `workflows-${sourceFingerprint(entry)}.json`);
  if (existsSync(file)) {
    try {
      return JSON.parse(readFileSync(file, 'utf8')) as WorkflowBundleWithSourceMap;
    } catch {
      // unreadable (e.g. a disk that filled up while writing it): made again below
    }
  }
  // webpack only here: a worker started from a cached or prebuilt bundle never loads it.
  const { bundleWorkflowCode } = await import('@temporalio/worker');
  const bundle = await bundleWorkflowCode({ workflowsPath: entry });
  try {
    mkdirSync(dirname(file), { recursive: true });
    // Written aside and renamed: a worker starting meanwhile never reads half a file.
    const partial = `${file}.${process.pid}.tmp`;
    writeFileSync(partial, JSON.stringify(bundle));
    renameSync(partial, file);
    pruneCache();
  } catch {
    // A read-only install: bundle at every start, as without a cache.
  }
  return bundle;
}

/** The workflow code a worker runs: `npm run build`'s bundle when present, else {@link cachedWorkflowBundle}. */
export async function workflowBundleForWorker(): Promise<{ codePath: string } | WorkflowBundleWithSourceMap> {
  if (existsSync(PREBUILT_BUNDLE)) return { codePath: PREBUILT_BUNDLE };
  return cachedWorkflowBundle(require.resolve('./workflows'));
}

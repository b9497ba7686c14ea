/**
 * The recorded workflow histories of test/histories/ (written by `npm run record-histories`, replayed by
 * test/unit/replay-histories.test.ts): where they live and what the manifest says of each file.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const HISTORIES_DIR = resolve(__dirname, '..', 'histories');
export const MANIFEST_FILE = join(HISTORIES_DIR, 'manifest.json');

/** Every record's data and partition key in a recorded scenario contains this; no recorded history may. */
export const RECORD_MARK = 'replay-record';

/** One recorded history file. */
export interface ManifestEntry {
  file: string;
  scenario: string;
  /** The workflow id to replay it under (a history does not hold it; the workflows use it). */
  workflowId: string;
  workflowType: string;
  /** Run of the workflow's continue-as-new chain, from 1. */
  run: number;
  events: number;
  /** The history's last event, e.g. WORKFLOW_EXECUTION_CONTINUED_AS_NEW or WORKFLOW_EXECUTION_COMPLETED. */
  closedBy: string;
}

export interface Manifest {
  /** When, and from which commit of the workflow code, the histories were recorded. */
  recordedAt: string;
  recordedFrom: string;
  /** What each scenario shows. */
  scenarios: Record<string, string>;
  histories: ManifestEntry[];
}

export function readManifest(): Manifest {
  return JSON.parse(readFileSync(MANIFEST_FILE, 'utf8')) as Manifest;
}

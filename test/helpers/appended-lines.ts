/**
 * Reading what test/fixtures/file-appending-processor.ts wrote: one JSON line per user record, and per `initialize` and
 * `shutdown`, each with the process id of the worker that ran it.
 */
import { existsSync, readFileSync } from 'node:fs';
import type { AppendedEvent, AppendedLine, AppendedRecord } from '../fixtures/file-appending-processor';

/** Every line of the file so far (none when it does not exist yet). */
export function readLines(file: string): AppendedLine[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as AppendedLine);
}

export const isRecord = (line: AppendedLine): line is AppendedRecord => !('event' in line);
export const isEvent = (line: AppendedLine): line is AppendedEvent => 'event' in line;

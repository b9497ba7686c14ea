/**
 * Reading what test/fixtures/file-appending-processor.ts wrote: one JSON line per user record, and per `initialize` and
 * `shutdown`, each with the process id of the worker that ran it.
 */
import type { AppendedEvent, AppendedLine, AppendedRecord } from '../fixtures/file-appending-processor';
import { readJsonLines } from './json-lines';

/** Every complete line of the file so far (none when it does not exist yet). */
export const readLines = (file: string): AppendedLine[] => readJsonLines<AppendedLine>(file);

export const isRecord = (line: AppendedLine): line is AppendedRecord => !('event' in line);
export const isEvent = (line: AppendedLine): line is AppendedEvent => 'event' in line;

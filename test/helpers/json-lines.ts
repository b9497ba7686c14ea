/**
 * Reading the JSON-lines files worker processes append to while a test reads them.
 */
import { existsSync, readFileSync } from 'node:fs';

/**
 * Every complete line of `file`, parsed (none when the file does not exist yet). A read can see the first part of an
 * append still being written (or one cut short by a SIGKILL): a last line without its newline counts as not written.
 */
export function readJsonLines<T>(file: string): T[] {
  if (!existsSync(file)) return [];
  const lines = readFileSync(file, 'utf8').split('\n');
  lines.pop(); // '' after the last newline, or a line still being written
  return lines.filter((line) => line.length > 0).map((line) => JSON.parse(line) as T);
}

/**
 * The tests' reader of JSON-lines files that worker processes append to while the test reads.
 */
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { readJsonLines } from '../helpers/json-lines';

test('readJsonLines: whole lines only; an append still being written is read once it is complete', () => {
  const dir = mkdtempSync(join(tmpdir(), 'json-lines-'));
  try {
    const file = join(dir, 'lines.jsonl');
    assert.deepEqual(readJsonLines(file), [], 'no file yet');
    writeFileSync(file, '{"n":1}\n{"n":2}\n{"n":3,"da');
    assert.deepEqual(readJsonLines(file), [{ n: 1 }, { n: 2 }]);
    appendFileSync(file, 'ta":"x"}\n');
    assert.deepEqual(readJsonLines(file), [{ n: 1 }, { n: 2 }, { n: 3, data: 'x' }]);
    writeFileSync(file, '{"n":1}\n{broken}\n');
    assert.throws(() => readJsonLines(file), SyntaxError, 'a complete line that is not JSON is an error');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * The README's options table and the options schema are one source: every option the schema accepts is documented in
 * the table, with the default the schema applies, and the table documents nothing the schema rejects.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { shardConsumerOptionsSchema } from '../../src/options';

const readme = readFileSync(join(__dirname, '..', '..', 'README.md'), 'utf8');

/** Rows of the shard consumer options table: option name → the default column as written. */
function optionsTable(): Map<string, string> {
  const section = readme.slice(readme.indexOf('## Options'), readme.indexOf('Stream consumer: `processor`'));
  const rows = new Map<string, string>();
  for (const line of section.split('\n')) {
    const match = /^\| `([A-Za-z]+)` \| ([^|]+) \|/.exec(line);
    if (match) rows.set(match[1]!, match[2]!.trim());
  }
  return rows;
}

describe('README options table', () => {
  test('documents every option with the default the schema applies, and nothing else', () => {
    const rows = optionsTable();
    const defaults = shardConsumerOptionsSchema.parse({}) as Record<string, unknown>;
    const names = Object.keys(shardConsumerOptionsSchema.in.shape);
    assert.deepEqual([...rows.keys()].sort(), [...names].sort());
    for (const name of names) {
      const value = defaults[name];
      const documented = rows.get(name)!;
      if (value === undefined) assert.equal(documented, '—', `${name} has no default`);
      else if (typeof value === 'object') {
        for (const [key, inner] of Object.entries(value as Record<string, unknown>)) {
          assert.ok(documented.includes(`${key}: ${String(inner)}`), `${name}.${key} default ${String(inner)}`);
        }
      } else assert.equal(documented, `\`${String(value as string | number | boolean)}\``, `${name} default`);
    }
  });
});

/**
 * The ports of a local Temporal cluster (src/dev/cluster.ts) come from getFreeLowPort: PostgreSQL's schema keeps
 * membership ports in a SMALLINT, so a port the kernel picks (32768-60999) makes every service fail at start.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';
import { getFreeLowPort } from '../../src/dev/net';

test('getFreeLowPort: ports in 20000-32767, never the same twice, free to bind', async () => {
  const ports: number[] = [];
  for (let i = 0; i < 40; i++) ports.push(await getFreeLowPort());
  for (const port of ports) assert.ok(port >= 20_000 && port <= 32_767, `${port} fits a SMALLINT and is not ephemeral`);
  assert.equal(new Set(ports).size, ports.length, 'no port handed out twice');
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(ports[0], '127.0.0.1', resolve);
  });
  await new Promise((resolve) => server.close(resolve));
});

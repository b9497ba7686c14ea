/**
 * kinesalite in a process of its own, for the scale measurement: there a producer puts thousands of records per second
 * while dozens of shards are read, and the emulator must not share a thread with the benchmark (the producer's
 * requests, dynalite's checkpoint writes).
 *
 * Usage (the benchmark does this): node --import tsx bench/kinesalite-process.ts '{}'; it picks a free loopback port
 * and sends `{ type: 'ready', endpoint }` over IPC. It exits when the parent goes away.
 */
import type { Server } from 'node:http';
import type { EmulatorMessage } from './lib/protocol';

function main(): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- kinesalite has no types
  const kinesalite = require('kinesalite') as (options: object) => Server;
  const server = kinesalite({ createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 10_000 });
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('kinesalite: no TCP address');
    const message: EmulatorMessage = { type: 'ready', endpoint: `http://127.0.0.1:${address.port}` };
    process.send?.(message);
  });
  process.once('disconnect', () => process.exit(0));
  process.once('SIGTERM', () => process.exit(0));
}

main();

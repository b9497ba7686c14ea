import { createConnection, createServer, type Socket } from 'node:net';
import { Duplex } from 'node:stream';

/** A TCP port free on 127.0.0.1 at the moment of asking. */
export function getFreePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('could not read the port of a probe socket'));
      });
    });
  });
}

const lowPortsHandedOut = new Set<number>();

/** True if a TCP server can bind host:port right now. */
export function canBind(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

/**
 * A TCP port free on 127.0.0.1 below the kernel's ephemeral range (20000-32767), never the same twice in this process.
 * Temporal's PostgreSQL schema keeps membership ports in a SMALLINT column, so they must be at most 32767: the ports
 * {@link getFreePort} gets from the kernel (32768-60999) make every service fail at start.
 */
export async function getFreeLowPort(host = '127.0.0.1'): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_768);
    if (lowPortsHandedOut.has(port) || !(await canBind(port, host))) continue;
    lowPortsHandedOut.add(port);
    return port;
  }
  throw new Error('no free TCP port found between 20000 and 32767 on ' + host);
}

/** True if something accepts a TCP connection on host:port right now. */
export function canConnect(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/** Resolves once something accepts TCP connections on host:port; rejects after timeoutMs. */
export async function waitForPort(port: number, timeoutMs: number, host = '127.0.0.1'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await canConnect(port, host))) {
    if (Date.now() > deadline) throw new Error(`nothing listened on ${host}:${port} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Calls `probe` until it resolves; rejects with its last error after timeoutMs. */
export async function waitUntil<T>(
  what: string,
  probe: () => Promise<T>,
  timeoutMs: number,
  intervalMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await probe();
    } catch (error) {
      if (Date.now() > deadline) {
        throw new Error(
          `${what} did not answer within ${timeoutMs} ms: ${error instanceof Error ? error.message : String(error)}`,
          { cause: error },
        );
      }
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** Resolves once `url` answers a GET with a 2xx status (the Temporal Web UI); rejects after 60 s. */
export async function waitForHttpOk(what: string, url: string): Promise<void> {
  await waitUntil(
    what,
    async () => {
      const response = await fetch(url);
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
    },
    60_000,
    200,
  );
}

/**
 * A Duplex over `socket` whose readable side starts with `head`, the bytes already read from it (to sniff the protocol).
 * `socket.unshift` does not do for an HTTP/2 server: it reads the socket's native handle ("bad client magic byte").
 */
export function withHead(socket: Socket, head: Buffer): Duplex {
  const duplex = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, encoding: BufferEncoding, callback: (error?: Error | null) => void) {
      socket.write(chunk, encoding, callback);
    },
    final(callback: () => void) {
      socket.end(callback);
    },
    destroy(error: Error | null, callback: (error: Error | null) => void) {
      socket.destroy(error ?? undefined);
      callback(error);
    },
  });
  duplex.push(head);
  socket.on('data', (chunk: Buffer) => {
    if (!duplex.push(chunk)) socket.pause();
  });
  socket.on('end', () => duplex.push(null));
  socket.on('error', (error) => duplex.destroy(error));
  socket.on('close', () => duplex.destroy());
  return duplex;
}

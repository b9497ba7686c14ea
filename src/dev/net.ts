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

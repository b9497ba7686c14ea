/**
 * A front for an AWS emulator on one plain port that speaks both HTTP/2 with prior knowledge (h2c: what the AWS SDK's
 * HTTP/2 handler does for an http:// endpoint) and HTTP/1.1. Every call is forwarded byte for byte to the emulator
 * (signature headers kept), except the HTTP/2 calls whose `x-amz-target` the caller intercepts. The fan-out server
 * (./fan-out-server.ts) intercepts SubscribeToShard with it.
 */
import { Agent, createServer as createHttpServer, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import {
  constants as http2Constants,
  createServer as createHttp2Server,
  type IncomingHttpHeaders as Http2Headers,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { withHead } from './net';

export interface EmulatorFrontOptions {
  /** The emulator's plain endpoint, e.g. `http://127.0.0.1:4567`. */
  emulatorEndpoint: string;
  /**
   * Port on 127.0.0.1.
   * @default a free port
   */
  port?: number;
  /**
   * Do not keep the process alive for the front's sake.
   * @default false
   */
  unref?: boolean;
  /** Answers the HTTP/2 calls with this `x-amz-target` instead of forwarding them; `body` is the whole request body. */
  intercept: { target: string; handle(stream: ServerHttp2Stream, body: Buffer): void };
}

export interface EmulatorFront {
  /** `http://127.0.0.1:<port>` */
  endpoint: string;
  /** Destroys every session and connection and stops listening. */
  close(): Promise<void>;
}

type Reply = (status: number, headers: IncomingHttpHeaders, body: Buffer) => void;

export async function startEmulatorFront(options: EmulatorFrontOptions): Promise<EmulatorFront> {
  const emulator = new URL(options.emulatorEndpoint);
  const agent = new Agent({ keepAlive: true });

  /** Forwards one call to the emulator, signature headers and all. */
  function forward(
    method: string,
    path: string,
    headers: IncomingHttpHeaders | Http2Headers,
    body: Buffer,
    reply: Reply,
  ) {
    const upstream: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(headers)) {
      if (value !== undefined && !name.startsWith(':') && name !== 'host' && name !== 'connection')
        upstream[name] = value;
    }
    upstream['content-length'] = String(body.length);
    const request = httpRequest(
      { host: emulator.hostname, port: emulator.port, method, path, headers: upstream, agent },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => reply(response.statusCode ?? 500, response.headers, Buffer.concat(chunks)));
      },
    );
    request.on('error', (error) => reply(502, { 'content-type': 'text/plain' }, Buffer.from(String(error))));
    request.end(body);
  }

  const sessions = new Set<ServerHttp2Session>();
  const h2 = createHttp2Server();
  h2.on('session', (session: ServerHttp2Session) => {
    sessions.add(session);
    session.on('close', () => sessions.delete(session));
    session.on('error', () => {});
  });
  h2.on('stream', (stream: ServerHttp2Stream, headers: Http2Headers) => {
    stream.on('error', () => {});
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', () => {
      const body = Buffer.concat(chunks);
      if (headers['x-amz-target'] === options.intercept.target) {
        options.intercept.handle(stream, body);
        return;
      }
      forward(String(headers[':method']), String(headers[':path']), headers, body, (status, upstream, payload) => {
        if (stream.destroyed) return;
        const answer: Record<string, string | number> = { ':status': status };
        for (const name of ['content-type', 'x-amzn-requestid', 'x-amzn-errortype']) {
          const value = upstream[name];
          if (typeof value === 'string') answer[name] = value;
        }
        stream.respond(answer);
        stream.end(payload);
      });
    });
  });

  const h1 = createHttpServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () =>
      forward(
        request.method ?? 'POST',
        request.url ?? '/',
        request.headers,
        Buffer.concat(chunks),
        (status, upstream, payload) => {
          response.writeHead(status, { 'content-type': upstream['content-type'] ?? 'application/x-amz-json-1.1' });
          response.end(payload);
        },
      ),
    );
  });

  const sockets = new Set<Socket>();
  const server = createNetServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.once('data', (head: Buffer) => {
      socket.pause();
      // An HTTP/2 client opens with the connection preface "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".
      const target = head.subarray(0, 3).toString('latin1') === 'PRI' ? h2 : h1;
      target.emit('connection', withHead(socket, head));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', resolve);
  });
  if (options.unref) server.unref();
  const { port } = server.address() as AddressInfo;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    async close() {
      for (const session of sessions) session.destroy(undefined, http2Constants.NGHTTP2_NO_ERROR);
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      agent.destroy();
    },
  };
}

import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** The faults the proxy injects. */
export type FaultKind = 'throttle' | 'limit' | 'server-error' | 'reset' | 'slow';

export interface FaultProxyOptions {
  /** Where calls go when no fault is injected, e.g. http://127.0.0.1:4567. */
  target: string;
  /** Share of calls that get a fault, 0..1. */
  faultRate: number;
  /** Faults to choose from (uniformly). @default all */
  kinds?: FaultKind[];
  /** Delay of a 'slow' answer. @default 1500 */
  slowMs?: number;
  /** Seed of the deterministic random choices. @default 1 */
  seed?: number;
  /** Only calls whose X-Amz-Target matches get faults (e.g. /GetRecords|UpdateItem/). @default every call */
  only?: RegExp;
}

export interface FaultProxy {
  endpoint: string;
  /** Calls seen per operation (the part of X-Amz-Target after the dot). */
  calls: Map<string, number>;
  /** Faults injected per kind. */
  faults: Record<FaultKind, number>;
  /** Timestamps (ms) of calls per operation, for backoff checks. */
  callTimes: Map<string, number[]>;
  close(): Promise<void>;
}

/** A small deterministic PRNG (mulberry32), so runs inject the same faults in the same order. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function awsError(target: string, type: string, message: string) {
  // Kinesis and DynamoDB speak AWS JSON 1.1 / 1.0: the error type travels in __type (and x-amzn-ErrorType).
  const prefixed = target.startsWith('DynamoDB') ? `com.amazonaws.dynamodb.v20120810#${type}` : type;
  return { body: JSON.stringify({ __type: prefixed, message }), type };
}

/**
 * An HTTP proxy in front of a Kinesis or DynamoDB emulator that answers a set share of calls with a fault: throttling
 * (ProvisionedThroughputExceededException), LimitExceededException, HTTP 500, a connection reset, or a slow answer.
 */
export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const target = new URL(options.target);
  const kinds = options.kinds ?? ['throttle', 'limit', 'server-error', 'reset', 'slow'];
  const next = random(options.seed ?? 1);
  const calls = new Map<string, number>();
  const callTimes = new Map<string, number[]>();
  const faults: Record<FaultKind, number> = { throttle: 0, limit: 0, 'server-error': 0, reset: 0, slow: 0 };
  const sockets = new Set<Socket>();

  const server: Server = createServer((req, res) => {
    const amzTarget = String(req.headers['x-amz-target'] ?? '');
    const operation = amzTarget.split('.').pop() || 'unknown';
    calls.set(operation, (calls.get(operation) ?? 0) + 1);
    const times = callTimes.get(operation) ?? [];
    times.push(Date.now());
    callTimes.set(operation, times);
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const eligible = !options.only || options.only.test(amzTarget);
      const roll = next();
      const kind = eligible && roll < options.faultRate ? kinds[Math.floor(next() * kinds.length)] : undefined;
      const forward = () => {
        const upstream = httpRequest(
          { host: target.hostname, port: target.port, path: req.url, method: req.method, headers: { ...req.headers, host: target.host } },
          (answer) => {
            res.writeHead(answer.statusCode ?? 502, answer.headers);
            answer.pipe(res);
          },
        );
        upstream.on('error', () => res.destroy());
        upstream.end(Buffer.concat(chunks));
      };
      if (kind) faults[kind]++;
      switch (kind) {
        case 'throttle': {
          const error = awsError(amzTarget, 'ProvisionedThroughputExceededException', 'Rate exceeded for shard (injected)');
          res.writeHead(400, { 'Content-Type': 'application/x-amz-json-1.1', 'x-amzn-ErrorType': error.type }).end(error.body);
          return;
        }
        case 'limit': {
          const error = awsError(amzTarget, 'LimitExceededException', 'Limit exceeded (injected)');
          res.writeHead(400, { 'Content-Type': 'application/x-amz-json-1.1', 'x-amzn-ErrorType': error.type }).end(error.body);
          return;
        }
        case 'server-error': {
          const error = awsError(amzTarget, 'InternalFailure', 'Internal server error (injected)');
          res.writeHead(500, { 'Content-Type': 'application/x-amz-json-1.1', 'x-amzn-ErrorType': error.type }).end(error.body);
          return;
        }
        case 'reset':
          req.socket.destroy();
          return;
        case 'slow':
          setTimeout(forward, options.slowMs ?? 1_500);
          return;
        default:
          forward();
      }
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    calls,
    faults,
    callTimes,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

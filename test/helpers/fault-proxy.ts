import { createServer, type IncomingHttpHeaders, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { seededRandom } from './keyed-producer';

/**
 * The faults the proxy injects. `lost-answer` forwards the call (it takes effect upstream) and then drops the connection
 * instead of answering, as when a response is lost on the way back; it is not among the default kinds.
 */
export type FaultKind = 'throttle' | 'limit' | 'server-error' | 'reset' | 'slow' | 'lost-answer';

/** A GetRecords call, as {@link FaultProxyOptions.expireIterator} sees it. */
export interface GetRecordsCall {
  /** 1 for the first GetRecords call through the proxy, 2 for the next, ... */
  index: number;
  iterator: string;
  /** The shard the iterator reads, when the proxy saw the call that issued it. */
  shardId?: string;
  /** Milliseconds since the iterator was issued (by GetShardIterator or as a NextShardIterator), when known. */
  ageMs?: number;
}

/** One call through the proxy. */
export interface ProxyCall {
  /** The operation (the part of X-Amz-Target after the dot). */
  operation: string;
  /** When the call arrived (epoch ms). */
  at: number;
  /**
   * The shard the call is about: `ShardId` of a Kinesis request, the shard of a GetRecords iterator, or the `leaseKey` of
   * a DynamoDB item request. Absent when the request names none (ListShards, BatchGetItem, DescribeTable, ...).
   */
  shardId?: string;
  /** The fault injected into this call, if any. */
  fault?: FaultKind | 'expired-iterator';
  /** The request body (JSON). */
  request: string;
}

export interface FaultProxyOptions {
  /** Where calls go when no fault is injected, e.g. http://127.0.0.1:4567. */
  target: string;
  /** Share of calls that get a fault, 0..1. */
  faultRate: number;
  /** Faults to choose from (uniformly). @default all */
  kinds?: FaultKind[];
  /**
   * Choose the faults in turn (kinds[0], kinds[1], ...) instead of at random, so that every kind is injected once the
   * proxy has injected `kinds.length` faults.
   * @default false
   */
  cycleKinds?: boolean;
  /** Delay of a 'slow' answer. @default 1500 */
  slowMs?: number;
  /** Seed of the deterministic random choices. @default 1 */
  seed?: number;
  /** Only calls whose X-Amz-Target matches get faults (e.g. /GetRecords|UpdateItem/). @default every call */
  only?: RegExp;
  /**
   * GetRecords calls for which this returns true are answered with ExpiredIteratorException (HTTP 400), as Kinesis
   * answers an iterator older than five minutes, e.g. `(call) => call.index % 4 === 0` or
   * `(call) => (call.ageMs ?? 0) > 300`. Checked before the random faults. @default none
   */
  expireIterator?: (call: GetRecordsCall) => boolean;
}

export interface FaultProxy {
  endpoint: string;
  /** Calls seen per operation (the part of X-Amz-Target after the dot). */
  calls: Map<string, number>;
  /** Faults injected per kind. */
  faults: Record<FaultKind, number>;
  /** GetRecords calls answered with ExpiredIteratorException. */
  readonly expiredIterators: number;
  /** Timestamps (ms) of calls per operation, for backoff checks. */
  callTimes: Map<string, number[]>;
  /** Every call, in the order they arrived. */
  log: ProxyCall[];
  close(): Promise<void>;
}

function awsError(target: string, type: string, message: string) {
  // Kinesis and DynamoDB speak AWS JSON 1.1 / 1.0: the error type travels in __type (and x-amzn-ErrorType).
  const prefixed = target.startsWith('DynamoDB') ? `com.amazonaws.dynamodb.v20120810#${type}` : type;
  return { body: JSON.stringify({ __type: prefixed, message }), type };
}

function parseJson(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return value && typeof value === 'object' ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** The `leaseKey` string of a DynamoDB item request's Key or Item. */
function leaseKeyOf(request: Record<string, unknown>): string | undefined {
  const item = (request.Key ?? request.Item) as { leaseKey?: { S?: unknown } } | undefined;
  return typeof item?.leaseKey?.S === 'string' ? item.leaseKey.S : undefined;
}

/**
 * An HTTP proxy in front of a Kinesis or DynamoDB emulator that answers a set share of calls with a fault: throttling
 * (ProvisionedThroughputExceededException), LimitExceededException, HTTP 500, a connection reset, or a slow answer; and,
 * if asked, chosen GetRecords calls with ExpiredIteratorException. It follows shard iterators (which shard, issued when)
 * by reading the GetShardIterator and GetRecords answers, and logs every call.
 */
export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const target = new URL(options.target);
  const kinds = options.kinds ?? ['throttle', 'limit', 'server-error', 'reset', 'slow'];
  // Seeded, so runs inject the same faults in the same order.
  const next = seededRandom(options.seed ?? 1);
  const calls = new Map<string, number>();
  const callTimes = new Map<string, number[]>();
  const log: ProxyCall[] = [];
  const faults: Record<FaultKind, number> = {
    throttle: 0,
    limit: 0,
    'server-error': 0,
    reset: 0,
    slow: 0,
    'lost-answer': 0,
  };
  const iterators = new Map<string, { shardId: string; issuedAt: number }>();
  const sockets = new Set<Socket>();
  let injected = 0;
  let getRecordsCalls = 0;
  const proxy = { expiredIterators: 0 };

  const chooseKind = (): FaultKind | undefined =>
    options.cycleKinds ? kinds[injected % kinds.length] : kinds[Math.floor(next() * kinds.length)];

  /** Remembers the iterator an answer issues, and for which shard. */
  const track = (operation: string, shardId: string | undefined, body: string) => {
    if (shardId === undefined || (operation !== 'GetShardIterator' && operation !== 'GetRecords')) return;
    const answer = parseJson(body);
    const issued = answer?.ShardIterator ?? answer?.NextShardIterator;
    if (typeof issued === 'string') iterators.set(issued, { shardId, issuedAt: Date.now() });
  };

  const server: Server = createServer((req, res) => {
    const amzTarget = String(req.headers['x-amz-target'] ?? '');
    const operation = amzTarget.split('.').pop() || 'unknown';
    const arrivedAt = Date.now();
    calls.set(operation, (calls.get(operation) ?? 0) + 1);
    const times = callTimes.get(operation) ?? [];
    times.push(arrivedAt);
    callTimes.set(operation, times);
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const text = body.toString('utf8');
      const request = parseJson(text) ?? {};
      const iterator =
        operation === 'GetRecords' && typeof request.ShardIterator === 'string' ? request.ShardIterator : undefined;
      const known = iterator === undefined ? undefined : iterators.get(iterator);
      const shardId =
        typeof request.ShardId === 'string' ? request.ShardId : known ? known.shardId : leaseKeyOf(request);
      const call: ProxyCall = {
        operation,
        at: arrivedAt,
        ...(shardId === undefined ? {} : { shardId }),
        request: text,
      };
      log.push(call);

      if (iterator !== undefined) {
        getRecordsCalls++;
        const expire = options.expireIterator?.({
          index: getRecordsCalls,
          iterator,
          ...(known ? { shardId: known.shardId, ageMs: arrivedAt - known.issuedAt } : {}),
        });
        if (expire) {
          call.fault = 'expired-iterator';
          proxy.expiredIterators++;
          const error = awsError(amzTarget, 'ExpiredIteratorException', 'Iterator expired (injected)');
          res
            .writeHead(400, { 'Content-Type': 'application/x-amz-json-1.1', 'x-amzn-ErrorType': error.type })
            .end(error.body);
          return;
        }
      }

      const eligible = !options.only || options.only.test(amzTarget);
      const roll = next();
      const kind = eligible && roll < options.faultRate ? chooseKind() : undefined;
      const forward = (loseAnswer = false) => {
        const headers: IncomingHttpHeaders = { ...req.headers, host: target.host };
        const upstream = httpRequest(
          { host: target.hostname, port: target.port, path: req.url, method: req.method, headers },
          (answer) => {
            const answerChunks: Buffer[] = [];
            answer.on('data', (chunk: Buffer) => answerChunks.push(chunk));
            answer.on('end', () => {
              const answerBody = Buffer.concat(answerChunks);
              if (loseAnswer) {
                req.socket.destroy();
                return;
              }
              if (answer.statusCode === 200) track(operation, shardId, answerBody.toString('utf8'));
              res.writeHead(answer.statusCode ?? 502, answer.headers).end(answerBody);
            });
            answer.on('error', () => res.destroy());
          },
        );
        upstream.on('error', () => res.destroy());
        upstream.end(body);
      };
      if (kind) {
        faults[kind]++;
        injected++;
        call.fault = kind;
      }
      switch (kind) {
        case 'throttle': {
          const error = awsError(
            amzTarget,
            'ProvisionedThroughputExceededException',
            'Rate exceeded for shard (injected)',
          );
          res
            .writeHead(400, { 'Content-Type': 'application/x-amz-json-1.1', 'x-amzn-ErrorType': error.type })
            .end(error.body);
          return;
        }
        case 'limit': {
          const error = awsError(amzTarget, 'LimitExceededException', 'Limit exceeded (injected)');
          res
            .writeHead(400, { 'Content-Type': 'application/x-amz-json-1.1', 'x-amzn-ErrorType': error.type })
            .end(error.body);
          return;
        }
        case 'server-error': {
          const error = awsError(amzTarget, 'InternalFailure', 'Internal server error (injected)');
          res
            .writeHead(500, { 'Content-Type': 'application/x-amz-json-1.1', 'x-amzn-ErrorType': error.type })
            .end(error.body);
          return;
        }
        case 'reset':
          req.socket.destroy();
          return;
        case 'slow':
          setTimeout(forward, options.slowMs ?? 1_500);
          return;
        case 'lost-answer':
          forward(true);
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
    get expiredIterators() {
      return proxy.expiredIterators;
    },
    callTimes,
    log,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

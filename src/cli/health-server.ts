/**
 * The worker's health endpoints, for container HEALTHCHECKs and Kubernetes probes:
 * - `GET /healthz` (liveness): 200 while the process serves requests (its event loop is not stuck); 503 once stopped.
 * - `GET /readyz` (readiness): 200 while the worker polls its task queues; 503 before that and from the start of a
 *   graceful shutdown, so no new traffic is routed to it while its shards move to other workers.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** The port the Dockerfile and the Kubernetes example use. */
export const DEFAULT_HEALTH_PORT = 9465;
export const LIVENESS_PATH = '/healthz';
export const READINESS_PATH = '/readyz';

export type HealthState = 'STARTING' | 'READY' | 'STOPPING' | 'STOPPED';

export interface HealthServer {
  readonly port: number;
  set(state: HealthState): void;
  close(): Promise<void>;
}

export async function startHealthServer(port: number, host = '0.0.0.0'): Promise<HealthServer> {
  let state: HealthState = 'STARTING';
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    const ok = path === LIVENESS_PATH ? state !== 'STOPPED' : path === READINESS_PATH ? state === 'READY' : undefined;
    if (ok === undefined) {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    response.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(`${state}\n`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    set(next) {
      state = next;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { PayloadCodec } from '@temporalio/common';
import { temporal } from '@temporalio/proto';

export interface CodecServerOptions {
  /** Origins allowed to call the server (the Temporal UI's). @default ['*'] */
  allowOrigins?: string[];
}

const MAX_BODY_BYTES = 16 * 1024 * 1024;

function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new Error('request body too large'));
        request.destroy();
        return;
      }
      chunks.push(chunk);
    });
    request.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    request.on('error', reject);
  });
}

/**
 * A codec server for the Temporal UI and CLI (`--ui-codec-endpoint`, `temporal ... --codec-endpoint`): POST /encode and
 * POST /decode take and return `{ "payloads": [...] }` in protobuf JSON, as Temporal's remote codec protocol defines.
 */
export function createCodecServer(codec: PayloadCodec, options: CodecServerOptions = {}): Server {
  const allowOrigins = options.allowOrigins ?? ['*'];
  const cors = (request: IncomingMessage, response: ServerResponse) => {
    const origin = request.headers.origin;
    if (allowOrigins.includes('*')) response.setHeader('Access-Control-Allow-Origin', '*');
    else if (origin && allowOrigins.includes(origin)) {
      response.setHeader('Access-Control-Allow-Origin', origin);
      response.setHeader('Vary', 'Origin');
    }
    response.setHeader('Access-Control-Allow-Methods', 'POST, OPTIONS');
    response.setHeader('Access-Control-Allow-Headers', 'Content-Type, X-Namespace, Authorization');
    response.setHeader('Access-Control-Allow-Credentials', 'true');
  };
  return createServer((request, response) => {
    cors(request, response);
    if (request.method === 'OPTIONS') {
      response.writeHead(204).end();
      return;
    }
    const route = request.url?.split('?')[0];
    if (request.method !== 'POST' || (route !== '/encode' && route !== '/decode')) {
      response.writeHead(404, { 'Content-Type': 'text/plain' }).end('POST /encode or /decode');
      return;
    }
    void (async () => {
      try {
        const body = JSON.parse(await readBody(request)) as unknown;
        const payloads = temporal.api.common.v1.Payloads.fromObject(body as Record<string, unknown>).payloads;
        const result = route === '/encode' ? await codec.encode(payloads) : await codec.decode(payloads);
        const json = temporal.api.common.v1.Payloads.toObject(
          temporal.api.common.v1.Payloads.create({ payloads: result }),
          {
            bytes: String,
          },
        );
        response.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(json));
      } catch (error) {
        response
          .writeHead(400, { 'Content-Type': 'text/plain' })
          .end(`cannot ${route?.slice(1)}: ${error instanceof Error ? error.message : String(error)}`);
      }
    })();
  });
}

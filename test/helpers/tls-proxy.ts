/**
 * A TLS-terminating gRPC proxy in front of the (plain) Temporal dev server, with certificates made by openssl for the
 * test: it lets tests check TLS, mTLS and API keys for real. It records, per request, the gRPC method, the
 * `authorization` metadata and the client certificate presented, and can refuse requests without the right API key
 * (UNAUTHENTICATED, as Temporal Cloud does).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';

export interface TestCertificates {
  dir: string;
  /** PEM paths. */
  caPath: string;
  serverCertPath: string;
  serverKeyPath: string;
  clientCertPath: string;
  clientKeyPath: string;
  /** A CA that signed nothing here: a client trusting only it must refuse the server. */
  otherCaPath: string;
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

/** A CA, a server certificate for localhost/127.0.0.1 and a client certificate (CN kcl-client), all signed by the CA. */
export function makeCertificates(): TestCertificates {
  const dir = mkdtempSync(join(tmpdir(), 'kcl-certs-'));
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  for (const name of ['ca', 'other-ca']) {
    openssl(dir, [
      'req',
      '-x509',
      ...ec,
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-subj',
      `/CN=${name}`,
    ]);
  }
  const sign = (name: string, subject: string, extensions: string) => {
    writeFileSync(join(dir, `${name}.ext`), extensions);
    openssl(dir, ['req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject]);
    openssl(dir, [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
    ]);
  };
  sign(
    'server',
    '/CN=localhost',
    'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n',
  );
  sign(
    'client',
    '/CN=kcl-client',
    'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n',
  );
  return {
    dir,
    caPath: join(dir, 'ca.pem'),
    serverCertPath: join(dir, 'server.pem'),
    serverKeyPath: join(dir, 'server.key'),
    clientCertPath: join(dir, 'client.pem'),
    clientKeyPath: join(dir, 'client.key'),
    otherCaPath: join(dir, 'other-ca.pem'),
  };
}

export interface ProxiedRequest {
  method: string;
  authorization: string | undefined;
  /** CN of the client certificate presented, if any. */
  clientCertificate: string | undefined;
}

export interface TlsProxy {
  /** `localhost:<port>` (the name in the server certificate). */
  address: string;
  port: number;
  requests: ProxiedRequest[];
  close(): Promise<void>;
}

export interface TlsProxyOptions {
  /** The plain gRPC server, host:port. */
  upstream: string;
  certificates: TestCertificates;
  /** mTLS: refuse clients without a certificate signed by the CA. @default false */
  requireClientCertificate?: boolean;
  /** Refuse requests whose `authorization` is not `Bearer <apiKey>` with UNAUTHENTICATED. @default accept any */
  apiKey?: string;
}

/** Starts the proxy on a free port of 127.0.0.1. */
export async function startTlsProxy(options: TlsProxyOptions): Promise<TlsProxy> {
  const { certificates } = options;
  const upstream = http2.connect(`http://${options.upstream}`);
  upstream.on('error', () => undefined);
  const requests: ProxiedRequest[] = [];
  const server = http2.createSecureServer({
    key: readFileSync(certificates.serverKeyPath),
    cert: readFileSync(certificates.serverCertPath),
    ca: readFileSync(certificates.caPath),
    requestCert: true,
    rejectUnauthorized: options.requireClientCertificate ?? false,
    allowHTTP1: false,
  });
  server.on('stream', (stream, headers) => {
    const socket = stream.session?.socket as TLSSocket | undefined;
    const peer = socket?.getPeerCertificate();
    const authorization = headers.authorization;
    requests.push({
      method: String(headers[':path']),
      authorization,
      clientCertificate: peer && typeof peer.subject?.CN === 'string' ? peer.subject.CN : undefined,
    });
    if (options.apiKey !== undefined && authorization !== `Bearer ${options.apiKey}`) {
      stream.respond(
        {
          ':status': 200,
          'content-type': 'application/grpc',
          'grpc-status': '16',
          'grpc-message': 'Request unauthorized',
        },
        { endStream: true },
      );
      return;
    }
    const forwarded: http2.OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(headers)) {
      if (name === ':scheme' || name === ':authority') continue;
      forwarded[name] = value;
    }
    const request = upstream.request(forwarded);
    stream.pipe(request);
    request.on('response', (responseHeaders, flags) => {
      const ended = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
      const { ':status': status, ...rest } = responseHeaders;
      if (stream.destroyed) return;
      stream.respond({ ':status': status ?? 200, ...rest }, ended ? { endStream: true } : { waitForTrailers: true });
    });
    let trailers: http2.OutgoingHttpHeaders = {};
    request.on('trailers', (received: http2.IncomingHttpHeaders) => {
      trailers = received;
    });
    stream.on('wantTrailers', () => stream.sendTrailers(trailers));
    request.on('data', (chunk: Buffer) => {
      if (!stream.destroyed) stream.write(chunk);
    });
    request.on('end', () => {
      if (!stream.destroyed && !stream.writableEnded) stream.end();
    });
    request.on('error', () => stream.destroy());
    stream.on('error', () => request.destroy());
    stream.on('close', () => {
      if (!request.closed) request.close();
    });
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (session) => {
    sessions.add(session);
    session.on('close', () => sessions.delete(session));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    address: `localhost:${port}`,
    port,
    requests,
    async close() {
      for (const session of sessions) session.destroy();
      upstream.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

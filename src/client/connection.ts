/**
 * Connecting to Temporal (client and worker) with the settings of `resolveTemporalConnection`, and telling the user
 * precisely what went wrong: unreachable, TLS handshake, credentials, namespace, search attributes.
 */
import { connect as tlsConnect } from 'node:tls';
import { Client, Connection, type ConnectionOptions, type DataConverter } from '@temporalio/client';
import { NativeConnection, type NativeConnectionOptions } from '@temporalio/worker';
import { type TemporalConnectionSettings, usesTls } from '../config/temporal-connection';
import {
  KclError,
  NamespaceNotFoundError,
  SearchAttributesMissingError,
  TemporalAuthError,
  type TemporalTarget,
  TemporalTlsError,
  TemporalUnreachableError,
} from '../errors';
import { searchAttributeCliPairs } from '../search-attributes';

/** gRPC status codes the messages tell apart. */
const GRPC = {
  NOT_FOUND: 5,
  PERMISSION_DENIED: 7,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
  DEADLINE_EXCEEDED: 4,
} as const;

function target(settings: TemporalConnectionSettings): TemporalTarget {
  return {
    address: settings.address,
    namespace: settings.namespace,
    tls: usesTls(settings),
    apiKey: settings.apiKey !== undefined,
  };
}

function grpcCode(error: unknown): number | undefined {
  for (let e: unknown = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'number') return code;
  }
  return undefined;
}

function messages(error: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    parts.push(e instanceof Error ? e.message : JSON.stringify(e));
  }
  return parts.join(': ');
}

const TLS_PATTERN =
  /certificate|SSL|TLS|handshake|self[- ]signed|unable to (get|verify)|UnknownIssuer|InvalidCertificate|alert|wrong version number|ERR_SSL|hostname/i;
const AUTH_PATTERN = /unauthenticated|permission ?denied|unauthori[sz]ed|invalid api key|Request unauthorized/i;

/**
 * What a raw TLS handshake with the same settings says: the one place where Node tells the TLS reason plainly (the gRPC
 * libraries often report only "transport error").
 */
async function probeTls(settings: TemporalConnectionSettings): Promise<string | undefined> {
  if (!usesTls(settings)) return undefined;
  const [host = '', portText = ''] = [
    settings.address.slice(0, settings.address.lastIndexOf(':')),
    settings.address.slice(settings.address.lastIndexOf(':') + 1),
  ];
  const tls = typeof settings.tls === 'object' ? settings.tls : {};
  const buffer = (value: Buffer | Uint8Array | string | undefined) =>
    value === undefined ? undefined : Buffer.from(value as Uint8Array);
  return new Promise((resolve) => {
    const socket = tlsConnect({
      host,
      port: Number(portText),
      servername: tls.serverNameOverride ?? host,
      ALPNProtocols: ['h2'],
      ...(tls.serverRootCACertificate ? { ca: buffer(tls.serverRootCACertificate) } : {}),
      ...(tls.clientCertPair ? { cert: buffer(tls.clientCertPair.crt), key: buffer(tls.clientCertPair.key) } : {}),
    });
    let settled = false;
    const done = (result: string | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => done(undefined), 3_000);
    socket.once('error', (error: NodeJS.ErrnoException) =>
      done(
        /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH/.test(error.code ?? '') ? undefined : error.message,
      ),
    );
    // TLS 1.3 servers refuse a client certificate after the client has finished its side: wait for that alert.
    socket.once('secureConnect', () => setTimeout(() => done(undefined), 300));
  });
}

/** Turns a connection failure into the error that tells the user what to fix. */
export async function connectionFailure(
  settings: TemporalConnectionSettings,
  error: unknown,
  phase: 'connect' | 'namespace',
): Promise<KclError> {
  if (error instanceof KclError) return error;
  const code = grpcCode(error);
  const text = messages(error);
  if (code === GRPC.UNAUTHENTICATED || code === GRPC.PERMISSION_DENIED || AUTH_PATTERN.test(text)) {
    return new TemporalAuthError(target(settings), text, { cause: error });
  }
  if (phase === 'namespace' && code === GRPC.NOT_FOUND) {
    return new NamespaceNotFoundError(target(settings), { cause: error });
  }
  const tlsProblem = await probeTls(settings);
  if (tlsProblem) return new TemporalTlsError(settings.address, tlsProblem, { cause: error });
  if (usesTls(settings) && TLS_PATTERN.test(text))
    return new TemporalTlsError(settings.address, text, { cause: error });
  if (phase === 'connect' || code === GRPC.UNAVAILABLE || code === GRPC.DEADLINE_EXCEEDED) {
    return new TemporalUnreachableError(settings.address, text, { cause: error });
  }
  return new KclError(`Temporal at ${settings.address}: ${text}`, { cause: error });
}

function clientConnectionOptions(settings: TemporalConnectionSettings): ConnectionOptions {
  return {
    address: settings.address,
    ...(settings.tls !== undefined ? { tls: settings.tls } : {}),
    ...(settings.apiKey ? { apiKey: settings.apiKey } : {}),
    ...(settings.metadata ? { metadata: settings.metadata } : {}),
    connectTimeout: 5_000,
  };
}

/** The options `NativeConnection.connect` takes for these settings. */
export function nativeConnectionOptions(settings: TemporalConnectionSettings): NativeConnectionOptions {
  return {
    address: settings.address,
    ...(settings.tls !== undefined ? { tls: settings.tls } : {}),
    ...(settings.apiKey ? { apiKey: settings.apiKey } : {}),
    ...(settings.metadata ? { metadata: settings.metadata } : {}),
  };
}

/** Checks that the namespace exists and the credentials may use it. */
async function checkNamespace(settings: TemporalConnectionSettings, describe: () => Promise<unknown>): Promise<void> {
  try {
    await describe();
  } catch (error) {
    throw await connectionFailure(settings, error, 'namespace');
  }
}

/** A client connected to Temporal with its namespace checked, or an error that says what to fix. */
export async function connectClient(
  settings: TemporalConnectionSettings,
  options: { dataConverter?: DataConverter } = {},
): Promise<{ client: Client; connection: Connection; close: () => Promise<void> }> {
  let connection: Connection;
  try {
    connection = await Connection.connect(clientConnectionOptions(settings));
  } catch (error) {
    throw await connectionFailure(settings, error, 'connect');
  }
  try {
    await checkNamespace(settings, () =>
      connection.workflowService.describeNamespace({ namespace: settings.namespace }),
    );
  } catch (error) {
    await connection.close();
    throw error;
  }
  const client = new Client({
    connection,
    namespace: settings.namespace,
    ...(options.dataConverter ? { dataConverter: options.dataConverter } : {}),
  });
  return { client, connection, close: () => connection.close() };
}

/** A worker connection to Temporal with its namespace checked, or an error that says what to fix. */
export async function connectWorker(settings: TemporalConnectionSettings): Promise<NativeConnection> {
  let connection: NativeConnection;
  try {
    connection = await NativeConnection.connect(nativeConnectionOptions(settings));
  } catch (error) {
    throw await connectionFailure(settings, error, 'connect');
  }
  try {
    await checkNamespace(settings, () =>
      connection.workflowService.describeNamespace({ namespace: settings.namespace }),
    );
  } catch (error) {
    await connection.close();
    throw error;
  }
  return connection;
}

/**
 * The Kcl* search attributes (`Name=Type`) missing on the namespace, or undefined when they cannot be listed (the
 * credentials may not allow the operator API; starting the workflow then tells).
 */
export async function missingSearchAttributes(
  connection: Connection,
  namespace: string,
): Promise<string[] | undefined> {
  try {
    const response = await connection.operatorService.listSearchAttributes({ namespace });
    const known = new Set([
      ...Object.keys(response.customAttributes ?? {}),
      ...Object.keys(response.systemAttributes ?? {}),
    ]);
    return searchAttributeCliPairs().filter((pair) => !known.has(pair.split('=')[0] ?? pair));
  } catch {
    return undefined;
  }
}

/** Throws {@link SearchAttributesMissingError} when a Kcl* search attribute is not registered on the namespace. */
export async function requireSearchAttributes(connection: Connection, namespace: string): Promise<void> {
  const missing = await missingSearchAttributes(connection, namespace);
  if (missing && missing.length > 0) throw new SearchAttributesMissingError(namespace, missing);
}

/** Whether a failed start was refused for an unregistered search attribute (when they could not be listed first). */
export function isSearchAttributeRefusal(error: unknown): boolean {
  return (
    /search attribute/i.test(messages(error)) && /not defined|not registered|unknown|invalid/i.test(messages(error))
  );
}

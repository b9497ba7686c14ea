import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import { type Payload, type PayloadCodec, ValueError } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { InvalidConfigError } from '../errors';

/** Encodings this codec writes into a payload's `encoding` metadata. */
export const CODEC_ENCODING = {
  gzip: 'binary/gzip',
  encrypted: 'binary/encrypted',
} as const;

const ENCODING = 'encoding';
const KEY_ID = 'encryption-key-id';
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** Payloads smaller than this are not worth compressing. */
const COMPRESS_MIN_BYTES = 256;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export interface KclPayloadCodecOptions {
  /**
   * gzip payloads (of at least 256 bytes) when that makes them smaller.
   * @default true
   */
  compress?: boolean;
  /** AES-256-GCM key (32 bytes). Omit to compress only. */
  encryptionKey?: Uint8Array;
  /** Names the key in each payload, so keys can be rotated (decode picks the key by id). @default 'default' */
  keyId?: string;
  /** Older keys by id, still accepted when decoding. */
  decryptionKeys?: Record<string, Uint8Array>;
}

function serialize(payload: Payload): Uint8Array {
  return temporal.api.common.v1.Payload.encode(payload).finish();
}

function deserialize(bytes: Uint8Array): Payload {
  return temporal.api.common.v1.Payload.decode(bytes);
}

function checkKey(key: Uint8Array, what: string): void {
  if (key.byteLength !== 32) throw new InvalidConfigError(`${what} must be 32 bytes (AES-256), got ${key.byteLength}`);
}

/**
 * A payload codec for workflow payloads (inputs, results, signals, queries, heartbeat details): gzip compression and,
 * with a key, AES-256-GCM encryption. Use the same codec in the client, the worker and the codec server the Temporal UI
 * calls. Record data never enters workflow payloads in the first place; this protects positions, names and errors.
 */
export class KclPayloadCodec implements PayloadCodec {
  private readonly compress: boolean;
  private readonly key: Uint8Array | undefined;
  private readonly keyId: string;
  private readonly keys: Map<string, Uint8Array>;

  constructor(options: KclPayloadCodecOptions = {}) {
    this.compress = options.compress ?? true;
    this.keyId = options.keyId ?? 'default';
    if (options.encryptionKey) checkKey(options.encryptionKey, 'encryptionKey');
    this.key = options.encryptionKey;
    this.keys = new Map(Object.entries(options.decryptionKeys ?? {}));
    for (const [id, key] of this.keys) checkKey(key, `decryptionKeys.${id}`);
    if (this.key) this.keys.set(this.keyId, this.key);
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => this.encodeOne(payload));
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => this.decodeOne(payload));
  }

  private encodeOne(payload: Payload): Payload {
    let current = payload;
    if (this.compress) {
      const bytes = serialize(current);
      if (bytes.byteLength >= COMPRESS_MIN_BYTES) {
        const zipped = gzipSync(bytes);
        if (zipped.byteLength < bytes.byteLength) {
          current = { metadata: { [ENCODING]: encoder.encode(CODEC_ENCODING.gzip) }, data: zipped };
        }
      }
    }
    if (this.key) {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', this.key, iv);
      const sealed = Buffer.concat([iv, cipher.update(serialize(current)), cipher.final(), cipher.getAuthTag()]);
      current = {
        metadata: { [ENCODING]: encoder.encode(CODEC_ENCODING.encrypted), [KEY_ID]: encoder.encode(this.keyId) },
        data: sealed,
      };
    }
    return current;
  }

  private decodeOne(payload: Payload): Payload {
    let current = payload;
    for (;;) {
      const encoding = current.metadata?.[ENCODING] ? decoder.decode(current.metadata[ENCODING]) : undefined;
      if (encoding === CODEC_ENCODING.encrypted) {
        const keyId = current.metadata?.[KEY_ID] ? decoder.decode(current.metadata[KEY_ID]) : '';
        const key = this.keys.get(keyId);
        if (!key) throw new ValueError(`payload is encrypted with key '${keyId}', which this codec does not have`);
        const data = current.data ?? new Uint8Array();
        if (data.byteLength < IV_BYTES + TAG_BYTES) throw new ValueError('encrypted payload is too short');
        const decipher = createDecipheriv('aes-256-gcm', key, data.subarray(0, IV_BYTES));
        decipher.setAuthTag(data.subarray(data.byteLength - TAG_BYTES));
        current = deserialize(
          Buffer.concat([decipher.update(data.subarray(IV_BYTES, data.byteLength - TAG_BYTES)), decipher.final()]),
        );
      } else if (encoding === CODEC_ENCODING.gzip) {
        current = deserialize(gunzipSync(current.data ?? new Uint8Array()));
      } else {
        return current;
      }
    }
  }
}

/** Reads an AES-256 key given as base64 or hex (e.g. from TEMPORAL_KCL_CODEC_KEY). */
export function parseCodecKey(text: string): Uint8Array {
  const trimmed = text.trim();
  const bytes = /^[0-9a-fA-F]{64}$/.test(trimmed) ? Buffer.from(trimmed, 'hex') : Buffer.from(trimmed, 'base64');
  checkKey(bytes, 'the codec key (base64 or hex)');
  return bytes;
}

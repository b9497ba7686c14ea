import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import { defaultPayloadConverter } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { createCodecServer } from '../../src/codec/codec-server';
import { CODEC_ENCODING, KclPayloadCodec, parseCodecKey } from '../../src/codec/payload-codec';

const marker = 'a-marker-that-must-not-show-in-encoded-payloads';
const value = { shardId: 'shardId-000000000001', note: marker, filler: 'x'.repeat(2_000) };

function text(bytes: Uint8Array | null | undefined): string {
  return Buffer.from(bytes ?? []).toString('latin1');
}

describe('KclPayloadCodec', () => {
  test('compresses and encrypts: the encoded payload hides its content and decodes back exactly', async () => {
    const codec = new KclPayloadCodec({ encryptionKey: randomBytes(32), keyId: 'k1' });
    const payload = defaultPayloadConverter.toPayload(value);
    const [encoded] = await codec.encode([payload]);
    assert.ok(encoded);
    assert.equal(Buffer.from(encoded.metadata?.encoding ?? []).toString(), CODEC_ENCODING.encrypted);
    assert.equal(Buffer.from(encoded.metadata?.['encryption-key-id'] ?? []).toString(), 'k1');
    assert.ok(!text(encoded.data).includes(marker));
    assert.ok((encoded.data?.byteLength ?? 0) < (payload.data?.byteLength ?? 0), 'compressed before encryption');
    const [decoded] = await codec.decode([encoded]);
    assert.deepEqual(defaultPayloadConverter.fromPayload(decoded!), value);
  });

  test('compression only, without a key; small payloads stay as they are', async () => {
    const codec = new KclPayloadCodec();
    const [big, small] = await codec.encode([
      defaultPayloadConverter.toPayload(value),
      defaultPayloadConverter.toPayload('hi'),
    ]);
    assert.equal(Buffer.from(big?.metadata?.encoding ?? []).toString(), CODEC_ENCODING.gzip);
    assert.equal(Buffer.from(small?.metadata?.encoding ?? []).toString(), 'json/plain');
    const decoded = await codec.decode([big!, small!]);
    assert.deepEqual(
      decoded.map((p) => defaultPayloadConverter.fromPayload(p)),
      [value, 'hi'],
    );
  });

  test('tampered ciphertext, a wrong key and an unknown key id are rejected', async () => {
    const key = randomBytes(32);
    const [encoded] = await new KclPayloadCodec({ encryptionKey: key }).encode([
      defaultPayloadConverter.toPayload(value),
    ]);
    const tampered = { ...encoded!, data: Buffer.from(encoded!.data!) };
    tampered.data[20] = tampered.data[20]! ^ 1;
    await assert.rejects(new KclPayloadCodec({ encryptionKey: key }).decode([tampered]));
    await assert.rejects(new KclPayloadCodec({ encryptionKey: randomBytes(32) }).decode([encoded!]));
    await assert.rejects(
      new KclPayloadCodec({ encryptionKey: key, keyId: 'other' }).decode([encoded!]),
      /key 'default'/,
    );
  });

  test('a rotated key still decodes payloads written with the old one', async () => {
    const oldKey = randomBytes(32);
    const [encoded] = await new KclPayloadCodec({ encryptionKey: oldKey, keyId: 'old' }).encode([
      defaultPayloadConverter.toPayload(value),
    ]);
    const rotated = new KclPayloadCodec({
      encryptionKey: randomBytes(32),
      keyId: 'new',
      decryptionKeys: { old: oldKey },
    });
    assert.deepEqual(defaultPayloadConverter.fromPayload((await rotated.decode([encoded!]))[0]!), value);
  });

  test('keys must be 32 bytes, given as base64 or hex', () => {
    const key = randomBytes(32);
    assert.deepEqual(Buffer.from(parseCodecKey(key.toString('base64'))), key);
    assert.deepEqual(Buffer.from(parseCodecKey(key.toString('hex'))), key);
    assert.throws(() => parseCodecKey(randomBytes(16).toString('base64')), /32 bytes/);
    assert.throws(() => new KclPayloadCodec({ encryptionKey: randomBytes(31) }), /32 bytes/);
  });

  test('the codec server decodes for the Temporal UI over HTTP, with CORS', async () => {
    const codec = new KclPayloadCodec({ encryptionKey: randomBytes(32) });
    const server = createCodecServer(codec, { allowOrigins: ['http://ui.example'] });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const encoded = await codec.encode([defaultPayloadConverter.toPayload(value)]);
      const body = temporal.api.common.v1.Payloads.toObject(
        temporal.api.common.v1.Payloads.create({ payloads: encoded }),
        { bytes: String },
      );
      const response = await fetch(`${base}/decode`, {
        method: 'POST',
        body: JSON.stringify(body),
        headers: { Origin: 'http://ui.example', 'Content-Type': 'application/json' },
      });
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('access-control-allow-origin'), 'http://ui.example');
      const decoded = temporal.api.common.v1.Payloads.fromObject(
        (await response.json()) as Record<string, unknown>,
      ).payloads;
      assert.deepEqual(defaultPayloadConverter.fromPayload(decoded[0]!), value);
      const preflight = await fetch(`${base}/decode`, { method: 'OPTIONS', headers: { Origin: 'http://ui.example' } });
      assert.equal(preflight.status, 204);
      assert.equal((await fetch(`${base}/other`, { method: 'POST', body: '{}' })).status, 404);
      assert.equal((await fetch(`${base}/decode`, { method: 'POST', body: 'not json' })).status, 400);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

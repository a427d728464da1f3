/**
 * Device-key test helpers: requests through a client, and verifying a `device/key/sign` answer the
 * way a relying party would, with openssl against the bytes of `signedPayloadBase64`.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { RpcMessage } from './app-server-process.js';

const run = promisify(execFile);

export interface KeyInfo {
  keyId: string;
  publicKeySpkiDerBase64: string;
  algorithm: string;
  protectionClass: string;
}

export interface Signature {
  signatureDerBase64: string;
  signedPayloadBase64: string;
  algorithm: string;
}

interface Requester {
  request(method: string, params?: unknown): Promise<RpcMessage>;
}

export async function createKey(client: Requester, params: Record<string, unknown>): Promise<KeyInfo> {
  const reply = await client.request('device/key/create', params);
  assert.ok(reply.result, `device/key/create failed: ${JSON.stringify(reply.error)}`);
  return reply.result as KeyInfo;
}

export async function signWith(client: Requester, keyId: string, payload: unknown): Promise<Signature> {
  const reply = await client.request('device/key/sign', { keyId, payload });
  assert.ok(reply.result, `device/key/sign failed: ${JSON.stringify(reply.error)}`);
  return reply.result as Signature;
}

/** The error of a reply that must fail. */
export function errorOf(reply: RpcMessage): { code: number; message: string } {
  assert.ok(reply.error, `expected an error, got ${JSON.stringify(reply.result)}`);
  return { code: reply.error.code, message: reply.error.message };
}

/** Runs `openssl dgst -sha256 -verify` on the signed bytes; resolves with its output. */
export async function opensslVerify(publicKeySpkiDerBase64: string, signature: Signature): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'gatehouse-verify-'));
  try {
    const body = publicKeySpkiDerBase64.match(/.{1,64}/g)!.join('\n');
    await writeFile(join(dir, 'pub.pem'), `-----BEGIN PUBLIC KEY-----\n${body}\n-----END PUBLIC KEY-----\n`);
    await writeFile(join(dir, 'sig.der'), Buffer.from(signature.signatureDerBase64, 'base64'));
    await writeFile(join(dir, 'payload.bin'), Buffer.from(signature.signedPayloadBase64, 'base64'));
    const { stdout } = await run(
      'openssl',
      ['dgst', '-sha256', '-verify', 'pub.pem', '-signature', 'sig.der', 'payload.bin'],
      { cwd: dir },
    ).catch((e: { stdout?: string; stderr?: string }) => ({ stdout: `${e.stdout ?? ''}${e.stderr ?? ''}` }));
    return stdout.trim();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

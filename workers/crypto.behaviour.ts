/**
 * The crypto actor's behaviour, run in worker threads so hashing and key work never occupy the
 * main thread. Later features (attestation header encoding, device-key signing) add messages here.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Reply } from '../src/runtime/envelope.js';

export type DigestAlgorithm = 'sha256' | 'sha384' | 'sha512';

export interface DigestRequest {
  algorithm: DigestAlgorithm;
  data: Uint8Array | string;
}

export interface RandomIdRequest {
  prefix: string;
  /** Random bytes before base64url encoding (32 bytes -> 43 characters). */
  bytes: number;
}

const ALGORITHMS: readonly string[] = ['sha256', 'sha384', 'sha512'];

function invalid(message: string): Reply {
  return { ok: false, error: { family: 'broker', code: 'INVALID_INPUT', message } };
}

export const cryptoBehaviour = {
  /** base64url digest of the data. */
  digest(body: DigestRequest): Reply {
    if (!ALGORITHMS.includes(body?.algorithm))
      return invalid(`unsupported digest algorithm: ${String(body?.algorithm)}`);
    if (typeof body.data !== 'string' && !(body.data instanceof Uint8Array))
      return invalid('digest data must be bytes or a string');
    return { ok: true, value: createHash(body.algorithm).update(body.data).digest('base64url') };
  },
  /** An identifier made of a prefix and fresh random bytes in base64url. */
  randomId(body: RandomIdRequest): Reply {
    if (!Number.isInteger(body?.bytes) || body.bytes < 1 || body.bytes > 1024)
      return invalid('randomId bytes must be 1..1024');
    return { ok: true, value: `${body.prefix ?? ''}${randomBytes(body.bytes).toString('base64url')}` };
  },
};

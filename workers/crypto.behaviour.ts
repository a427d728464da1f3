/**
 * The crypto actor's behaviour, run in worker threads so hashing, attestation header encoding and
 * (later) key work never occupy the main thread.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Reply } from '../src/runtime/envelope.js';
import {
  AttestationStatus,
  attestationHeaderValue,
  type AttestationStatusCode,
} from '../src/attestation/header.js';

export type DigestAlgorithm = 'sha256' | 'sha384' | 'sha512';

export interface DigestRequest {
  algorithm: DigestAlgorithm;
  data: Uint8Array | string;
}

export interface AttestationHeaderRequest {
  status: AttestationStatusCode;
  /** The client's token, with status ok only. */
  token?: string;
}

export interface RandomIdRequest {
  prefix: string;
  /** Random bytes before base64url encoding (32 bytes -> 43 characters). */
  bytes: number;
}

const ALGORITHMS: readonly string[] = ['sha256', 'sha384', 'sha512'];
const ATTESTATION_STATUSES: readonly unknown[] = Object.values(AttestationStatus);

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
  /** The `x-oai-attestation` value for an outcome; null when it is no legal header value. */
  attestationHeader(body: AttestationHeaderRequest): Reply {
    if (!ATTESTATION_STATUSES.includes(body?.status))
      return invalid(`unknown attestation status: ${String(body?.status)}`);
    if (body.token !== undefined && typeof body.token !== 'string')
      return invalid('attestation token must be a string');
    return { ok: true, value: attestationHeaderValue(body.status, body.token) };
  },
  /** An identifier made of a prefix and fresh random bytes in base64url. */
  randomId(body: RandomIdRequest): Reply {
    if (!Number.isInteger(body?.bytes) || body.bytes < 1 || body.bytes > 1024)
      return invalid('randomId bytes must be 1..1024');
    return { ok: true, value: `${body.prefix ?? ''}${randomBytes(body.bytes).toString('base64url')}` };
  },
};

/**
 * The attestation actor (spec D): before each scoped outbound request, ask an attestation-capable
 * client for a token with `attestation/generate` and turn the outcome into the
 * `x-oai-attestation` header. Each ask is independent (no caching: every scoped request asks
 * again), so the actor answers asks concurrently and never holds its mailbox while a client
 * thinks.
 *
 * The outbound request is never held past the deadline: the server request expires at
 * `gatehouse.attestation_timeout_ms` (status 1), and a guard a little later covers a connection
 * whose mailbox is itself slow. The token is never logged.
 */
import { later, type Behaviour, type Message } from '../../src/runtime/actor.js';
import { isBrokerError } from '../../src/protocol/errors.js';
import {
  AttestationStatus,
  MAX_ATTESTATION_TOKEN_LENGTH,
  type AttestationStatusCode,
} from '../../src/attestation/header.js';
import type { ScopedRequest } from '../../src/upstream/scoped-request.js';
import type { Logger } from '../../src/util/logger.js';

export const ATTESTATION_ACTOR = 'attestation';

export const AttestationMessage = {
  /** ask: ScopedRequest -> the extra headers for it (`{}` or `{ 'x-oai-attestation': ... }`). */
  headers: 'attestation.headers',
} as const;

export const ATTESTATION_HEADER = 'x-oai-attestation';

export interface AttestationDeps {
  log: Logger;
  /** Deadline of one `attestation/generate` (the server request's own timeout). */
  timeoutMs: number;
  /** Whether a connection said `capabilities.requestAttestation: true` at initialize. */
  capable(connectionId: string): boolean;
  /** Sends `attestation/generate` with params `{}` to a connection; resolves with its validated answer. */
  generate(connectionId: string): Promise<{ token: string }>;
  /** The connection produced a token: its lifecycle moves to `attested`. */
  attested(connectionId: string): Promise<void>;
  /** Encodes the header value in the worker pool; null when it is no legal header value. */
  encode(status: AttestationStatusCode, token?: string): Promise<string | null>;
}

/** A guard past the server request's own deadline, for a connection that cannot even expire it. */
const GUARD_MS = 50;

export function attestationBehaviour(deps: AttestationDeps): Behaviour {
  async function headersFor(request: ScopedRequest): Promise<Record<string, string>> {
    // Only ChatGPT auth attests (spec D.1 rule 2); an API key never asks anyone.
    if (request.authMode !== 'chatgpt' && request.authMode !== 'chatgptAuthTokens') return {};
    const target = askedConnection(request.connectionIds, (id) => deps.capable(id));
    if (target === undefined) return {};
    const { status, token } = await ask(target);
    const value = await deps.encode(status, token);
    return value === null ? {} : { [ATTESTATION_HEADER]: value };
  }

  async function ask(connectionId: string): Promise<{ status: AttestationStatusCode; token?: string }> {
    let guard: NodeJS.Timeout | undefined;
    const expired = new Promise<'expired'>((resolve) => {
      guard = setTimeout(() => resolve('expired'), deps.timeoutMs + GUARD_MS);
    });
    try {
      const answer = await Promise.race([deps.generate(connectionId), expired]);
      if (answer === 'expired') return timedOut(connectionId);
      if (answer.token.length > MAX_ATTESTATION_TOKEN_LENGTH) {
        deps.log.warn(
          { connection: connectionId, length: answer.token.length },
          'attestation token longer than the limit; sent as malformed',
        );
        return { status: AttestationStatus.malformed };
      }
      deps.attested(connectionId).catch(() => undefined);
      return { status: AttestationStatus.ok, token: answer.token };
    } catch (e) {
      return failed(connectionId, e);
    } finally {
      clearTimeout(guard);
    }
  }

  function timedOut(connectionId: string) {
    deps.log.warn(
      { connection: connectionId },
      `attestation generation request timed out timeout_seconds=${Math.floor(deps.timeoutMs / 1000)}`,
    );
    return { status: AttestationStatus.timeout };
  }

  /** Spec D.3: which status a failed `attestation/generate` becomes. */
  function failed(connectionId: string, e: unknown): { status: AttestationStatusCode } {
    if (isBrokerError(e, 'REQUEST_TIMEOUT')) return timedOut(connectionId);
    if (isBrokerError(e, 'CLIENT_ERROR')) {
      const code = (e.data as { code?: unknown } | undefined)?.code;
      if (typeof code === 'number') {
        deps.log.warn({ connection: connectionId }, `attestation generation request failed code=${code}`);
        return { status: AttestationStatus.requestFailed };
      }
      deps.log.warn(
        { connection: connectionId },
        'failed to deserialize attestation generation response error_category=Data',
      );
      return { status: AttestationStatus.malformed };
    }
    deps.log.warn(
      { connection: connectionId, reason: e instanceof Error ? e.message : String(e) },
      'attestation generation request canceled',
    );
    return { status: AttestationStatus.canceled };
  }

  return {
    receive(message: Message) {
      if (message.type !== AttestationMessage.headers) {
        throw new TypeError(`attestation actor cannot handle ${message.type}`);
      }
      return later(headersFor(message.body as ScopedRequest));
    },
  };
}

/**
 * The connection asked: the lowest connection id among the thread's capable subscribers, as
 * codex 0.169.0 picks it (spec D.1 rule 1).
 */
export function askedConnection(
  connectionIds: readonly string[],
  capable: (connectionId: string) => boolean,
): string | undefined {
  let best: string | undefined;
  for (const id of connectionIds) {
    if (!capable(id)) continue;
    if (best === undefined || compareIds(id, best) < 0) best = id;
  }
  return best;
}

/** Connection ids are decimal counters; shorter is lower. */
function compareIds(a: string, b: string): number {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}

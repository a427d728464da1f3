/**
 * Extra headers of the scoped outbound requests (spec D.1): every Responses WebSocket handshake
 * (the prewarm and each reconnect included), every Responses POST and each realtime call creation
 * calls this just before the request leaves. The attestation actor decides whether to ask a
 * client and builds `x-oai-attestation`; this wires it to the broker.
 */
import type { BrokerServices } from '../broker/services.js';
import type { ScopedHeaders, ScopedRequest } from '../upstream/scoped-request.js';
import {
  ATTESTATION_ACTOR,
  AttestationMessage,
  attestationBehaviour,
} from '../../actors/attestation/attestation.actor.js';
import type { AttestationHeaderRequest } from '../../workers/crypto.behaviour.js';

export function createScopedHeaders(services: BrokerServices): ScopedHeaders {
  if (!services.system.has(ATTESTATION_ACTOR)) {
    services.system.spawn(ATTESTATION_ACTOR, () =>
      attestationBehaviour({
        log: services.log,
        timeoutMs: services.settings.attestationTimeoutMs,
        capable: (connectionId) => services.session(connectionId)?.requestAttestation === true,
        generate: (connectionId) => services.request(connectionId, 'attestation/generate', {}),
        attested: async (connectionId) => {
          await services.lifecycle(connectionId, 'attestation.answered');
        },
        encode: (status, token) =>
          services.crypto<string | null>('attestationHeader', {
            status,
            ...(token === undefined ? {} : { token }),
          } satisfies AttestationHeaderRequest),
      }),
    );
  }
  return (request: ScopedRequest) =>
    services.system.ask<Record<string, string>>(ATTESTATION_ACTOR, AttestationMessage.headers, request);
}

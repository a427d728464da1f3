/**
 * Step 1 of spec A.6: decode method + params into a typed request. Failures carry codex's exact
 * `Invalid request: ...` text; the remaining checks (init gate, experimental gate) belong to the
 * connection machine.
 */
import type { Static } from 'typebox';
import type { InitializeParams } from './methods/initialize.js';
import { ClientRequests, type ClientMethod } from './methods/index.js';
import type { RequestId } from './request-id.js';
import { explainInvalid } from './registry.js';
import { missingField, unknownVariant } from './serde-errors.js';

export type DecodedRequest =
  | { kind: 'invalid'; id: RequestId; message: string }
  | { kind: 'initialize'; id: RequestId; params: Static<typeof InitializeParams> }
  | {
      kind: 'call';
      id: RequestId;
      method: Exclude<ClientMethod, 'initialize'>;
      params: unknown;
      experimental?: string;
    };

const METHOD_NAMES = Object.keys(ClientRequests);

export function decodeClientRequest(req: {
  id: RequestId;
  method: string;
  params: unknown;
  hasParams: boolean;
}): DecodedRequest {
  const { id, method } = req;
  if (!Object.hasOwn(ClientRequests, method)) {
    return invalid(id, unknownVariant(method, METHOD_NAMES));
  }
  const name = method as ClientMethod;
  const def = ClientRequests[name];
  if (!req.hasParams && def.paramsRequired) return invalid(id, missingField('params'));
  const params = req.hasParams ? req.params : undefined;
  if (params !== undefined) {
    const error = explainInvalid(def.params, params);
    if (error) return invalid(id, error);
  }
  if (name === 'initialize') {
    return { kind: 'initialize', id, params: params as Static<typeof InitializeParams> };
  }
  const experimental =
    def.experimental === true
      ? name
      : params !== undefined && 'experimentalUse' in def && typeof def.experimentalUse === 'function'
        ? (def.experimentalUse as (p: unknown) => string | undefined)(params)
        : undefined;
  return experimental === undefined
    ? { kind: 'call', id, method: name, params }
    : { kind: 'call', id, method: name, params, experimental };
}

function invalid(id: RequestId, detail: string): DecodedRequest {
  return { kind: 'invalid', id, message: `Invalid request: ${detail}` };
}

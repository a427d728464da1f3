import * as Type from 'typebox/type';
import { defineServerRequest } from '../registry.js';

export const AttestationGenerateParams = Type.Object({}, { title: 'AttestationGenerateParams' });

export const AttestationGenerateResponse = Type.Object(
  { token: Type.String({ description: 'Opaque client attestation token.' }) },
  { title: 'AttestationGenerateResponse' },
);

export const attestationServerRequests = {
  'attestation/generate': defineServerRequest({
    params: AttestationGenerateParams,
    result: AttestationGenerateResponse,
    timeoutMs: 100,
  }),
};

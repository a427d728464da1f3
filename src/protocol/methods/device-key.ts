/**
 * Device keys: codex 0.129.0's `device/key/create`, `device/key/public` and `device/key/sign`, with
 * the names, titles and descriptions of its generated schema (reference-schema/codex-0.129.0/v2/
 * DeviceKey*.json). Not experimental: codex answers them without `experimentalApi` (spec A.0).
 */
import * as Type from 'typebox/type';
import { defineClientRequest } from '../registry.js';

export const DeviceKeyAlgorithm = Type.Union([Type.Literal('ecdsa_p256_sha256')], {
  title: 'DeviceKeyAlgorithm',
  description: 'Device-key algorithm reported at enrollment and signing boundaries.',
});

export const DeviceKeyProtectionClass = Type.Union(
  [
    Type.Literal('hardware_secure_enclave'),
    Type.Literal('hardware_tpm'),
    Type.Literal('os_protected_nonextractable'),
  ],
  {
    title: 'DeviceKeyProtectionClass',
    description: 'Platform protection class for a controller-local device key.',
  },
);

export const DeviceKeyProtectionPolicy = Type.Union(
  [Type.Literal('hardware_only'), Type.Literal('allow_os_protected_nonextractable')],
  {
    title: 'DeviceKeyProtectionPolicy',
    description: 'Protection policy for creating or loading a controller-local device key.',
  },
);

export const DeviceKeyCreateParams = Type.Object(
  {
    accountUserId: Type.String(),
    clientId: Type.String(),
    protectionPolicy: Type.Optional(
      Type.Union([DeviceKeyProtectionPolicy, Type.Null()], {
        description: 'Defaults to `hardware_only` when omitted.',
      }),
    ),
  },
  {
    title: 'DeviceKeyCreateParams',
    description: 'Create a controller-local device key with a random key id.',
  },
);

const deviceKeyInfo = {
  algorithm: DeviceKeyAlgorithm,
  keyId: Type.String(),
  protectionClass: DeviceKeyProtectionClass,
  publicKeySpkiDerBase64: Type.String({ description: 'SubjectPublicKeyInfo DER encoded as base64.' }),
};

export const DeviceKeyCreateResponse = Type.Object(deviceKeyInfo, {
  title: 'DeviceKeyCreateResponse',
  description: 'Device-key metadata and public key returned by create/public APIs.',
});

export const DeviceKeyPublicParams = Type.Object(
  { keyId: Type.String() },
  { title: 'DeviceKeyPublicParams', description: 'Fetch a controller-local device key public key by id.' },
);

export const DeviceKeyPublicResponse = Type.Object(deviceKeyInfo, {
  title: 'DeviceKeyPublicResponse',
  description: 'Device-key public metadata returned by `device/key/public`.',
});

const UnixSeconds = (description: string) => Type.Integer({ format: 'int64', description });

export const RemoteControlClientConnectionDeviceKeySignPayload = Type.Object(
  {
    type: Type.Literal('remoteControlClientConnection', {
      title: 'RemoteControlClientConnectionDeviceKeySignPayloadType',
    }),
    nonce: Type.String(),
    audience: Type.Union([Type.Literal('remote_control_client_websocket')], {
      title: 'RemoteControlClientConnectionAudience',
      description: 'Audience for a remote-control client connection device-key proof.',
    }),
    sessionId: Type.String({
      description: 'Backend-issued websocket session id that this proof authorizes.',
    }),
    targetOrigin: Type.String({
      description: 'Origin of the backend endpoint that issued the challenge and will verify this proof.',
    }),
    targetPath: Type.String({ description: 'Websocket route path that this proof authorizes.' }),
    accountUserId: Type.String(),
    clientId: Type.String(),
    tokenSha256Base64url: Type.String({
      description: 'SHA-256 of the controller-scoped remote-control token, encoded as unpadded base64url.',
    }),
    tokenExpiresAt: UnixSeconds('Remote-control token expiration as Unix seconds.'),
    scopes: Type.Array(Type.String(), {
      description: 'Must contain exactly `remote_control_controller_websocket`.',
    }),
  },
  {
    title: 'RemoteControlClientConnectionDeviceKeySignPayload',
    description: 'Payload bound to one remote-control controller websocket `/client` connection challenge.',
  },
);

export const RemoteControlClientEnrollmentDeviceKeySignPayload = Type.Object(
  {
    type: Type.Literal('remoteControlClientEnrollment', {
      title: 'RemoteControlClientEnrollmentDeviceKeySignPayloadType',
    }),
    nonce: Type.String(),
    audience: Type.Union([Type.Literal('remote_control_client_enrollment')], {
      title: 'RemoteControlClientEnrollmentAudience',
      description: 'Audience for a remote-control client enrollment device-key proof.',
    }),
    challengeId: Type.String({
      description: 'Backend-issued enrollment challenge id that this proof authorizes.',
    }),
    targetOrigin: Type.String({
      description: 'Origin of the backend endpoint that issued the challenge and will verify this proof.',
    }),
    targetPath: Type.String({ description: 'HTTP route path that this proof authorizes.' }),
    accountUserId: Type.String(),
    clientId: Type.String(),
    deviceIdentitySha256Base64url: Type.String({
      description: 'SHA-256 of the requested device identity operation, encoded as unpadded base64url.',
    }),
    challengeExpiresAt: UnixSeconds('Enrollment challenge expiration as Unix seconds.'),
  },
  {
    title: 'RemoteControlClientEnrollmentDeviceKeySignPayload',
    description: 'Payload bound to a remote-control client `/client/enroll` ownership challenge.',
  },
);

export const DeviceKeySignPayload = Type.Union(
  [RemoteControlClientConnectionDeviceKeySignPayload, RemoteControlClientEnrollmentDeviceKeySignPayload],
  { title: 'DeviceKeySignPayload', description: 'Structured payloads accepted by `device/key/sign`.' },
);

export const DeviceKeySignParams = Type.Object(
  { keyId: Type.String(), payload: DeviceKeySignPayload },
  {
    title: 'DeviceKeySignParams',
    description: 'Sign an accepted structured payload with a controller-local device key.',
  },
);

export const DeviceKeySignResponse = Type.Object(
  {
    algorithm: DeviceKeyAlgorithm,
    signatureDerBase64: Type.String({ description: 'ECDSA signature DER encoded as base64.' }),
    signedPayloadBase64: Type.String({
      description:
        'Exact bytes signed by the device key, encoded as base64. Verifiers must verify this byte string directly and must not reserialize `payload`.',
    }),
  },
  { title: 'DeviceKeySignResponse', description: 'ASN.1 DER signature returned by `device/key/sign`.' },
);

export const deviceKeyRequests = {
  'device/key/create': defineClientRequest({
    params: DeviceKeyCreateParams,
    result: DeviceKeyCreateResponse,
    version: 'v2',
  }),
  'device/key/public': defineClientRequest({
    params: DeviceKeyPublicParams,
    result: DeviceKeyPublicResponse,
    version: 'v2',
  }),
  'device/key/sign': defineClientRequest({
    params: DeviceKeySignParams,
    result: DeviceKeySignResponse,
    version: 'v2',
  }),
};

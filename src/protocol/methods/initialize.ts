import * as Type from 'typebox/type';
import { defineClientRequest, defineNotification } from '../registry.js';

export const ClientInfo = Type.Object(
  {
    name: Type.String(),
    title: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    version: Type.String(),
  },
  { title: 'ClientInfo' },
);

export const InitializeCapabilities = Type.Object(
  {
    experimentalApi: Type.Optional(
      Type.Boolean({
        default: false,
        description: 'Opt into receiving experimental API methods and fields.',
      }),
    ),
    requestAttestation: Type.Optional(
      Type.Boolean({
        default: false,
        description: 'Opt into `attestation/generate` requests for upstream `x-oai-attestation`.',
      }),
    ),
    optOutNotificationMethods: Type.Optional(
      Type.Union([Type.Array(Type.String()), Type.Null()], {
        description: 'Exact notification method names that should be suppressed for this connection.',
      }),
    ),
    // Accepted for compatibility with codex 0.169.0 clients; Gatehouse does not act on them.
    requiredHumanApproval: Type.Optional(Type.Boolean()),
    explicitGatewayOauth: Type.Optional(Type.Boolean()),
    mcpServerOpenaiFormElicitation: Type.Optional(Type.Boolean()),
    extensions: Type.Optional(Type.Union([Type.Object({}, { additionalProperties: true }), Type.Null()])),
  },
  {
    title: 'InitializeCapabilities',
    description: 'Client-declared capabilities negotiated during initialize.',
  },
);

export const InitializeParams = Type.Object(
  {
    clientInfo: ClientInfo,
    capabilities: Type.Optional(Type.Union([InitializeCapabilities, Type.Null()])),
  },
  { title: 'InitializeParams' },
);

export const InitializeResponse = Type.Object(
  {
    userAgent: Type.String(),
    codexHome: Type.String({ description: "Absolute path to the server's $CODEX_HOME directory." }),
    platformFamily: Type.String({ description: 'Platform family, for example `"unix"` or `"windows"`.' }),
    platformOs: Type.String({
      description: 'Operating system, for example `"macos"`, `"linux"`, or `"windows"`.',
    }),
  },
  { title: 'InitializeResponse' },
);

export const initializeRequests = {
  initialize: defineClientRequest({ params: InitializeParams, result: InitializeResponse, version: 'v1' }),
};

export const initializedNotification = {
  initialized: defineNotification({
    params: Type.Object({}, { title: 'InitializedNotification' }),
    version: 'v1',
  }),
};

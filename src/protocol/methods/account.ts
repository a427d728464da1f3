import * as Type from 'typebox/type';
import { defineNotification, defineServerRequest } from '../registry.js';

export const AuthMode = Type.Union(
  [
    'apikey',
    'chatgpt',
    'chatgptAuthTokens',
    'headers',
    'agentIdentity',
    'personalAccessToken',
    'bedrockApiKey',
    'bedrockAccessKeys',
  ].map((m) => Type.Literal(m)),
  { title: 'AuthMode' },
);

export const PlanType = Type.Union(
  [
    'free',
    'go',
    'plus',
    'pro',
    'prolite',
    'promax',
    'team',
    'self_serve_business_prolite',
    'self_serve_business_usage_based',
    'business',
    'ent26',
    'enterprise_cbp_automation',
    'enterprise_cbp_usage_based',
    'enterprise',
    'edu',
    'edu_plus',
    'edu_pro',
    'sci',
    'sci_plus',
    'unknown',
  ].map((p) => Type.Literal(p)),
  { title: 'PlanType' },
);

export const AccountUpdatedNotification = Type.Object(
  {
    // Optional in codex's schema, though codex always sends both (null when unknown).
    authMode: Type.Optional(Type.Union([AuthMode, Type.Null()])),
    planType: Type.Optional(Type.Union([PlanType, Type.Null()])),
  },
  { title: 'AccountUpdatedNotification' },
);

export const ChatgptAuthTokensRefreshParams = Type.Object(
  {
    reason: Type.Union([Type.Literal('unauthorized')], { title: 'ChatgptAuthTokensRefreshReason' }),
    previousAccountId: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  },
  { title: 'ChatgptAuthTokensRefreshParams' },
);

export const ChatgptAuthTokensRefreshResponse = Type.Object(
  {
    accessToken: Type.String(),
    chatgptAccountId: Type.String(),
    chatgptPlanType: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  },
  { title: 'ChatgptAuthTokensRefreshResponse' },
);

export const accountServerRequests = {
  'account/chatgptAuthTokens/refresh': defineServerRequest({
    params: ChatgptAuthTokensRefreshParams,
    result: ChatgptAuthTokensRefreshResponse,
    timeoutMs: 10_000,
  }),
};

export const accountNotifications = {
  'account/updated': defineNotification({ params: AccountUpdatedNotification, version: 'v2' }),
};

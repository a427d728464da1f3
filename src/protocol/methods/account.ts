import * as Type from 'typebox/type';
import { defineClientRequest, defineNotification, defineServerRequest } from '../registry.js';

export const AuthMode = Type.Union(
  [
    Type.Literal('apikey'),
    Type.Literal('chatgpt'),
    Type.Literal('chatgptAuthTokens'),
    Type.Literal('headers'),
    Type.Literal('agentIdentity'),
    Type.Literal('personalAccessToken'),
    Type.Literal('bedrockApiKey'),
    Type.Literal('bedrockAccessKeys'),
  ],
  { title: 'AuthMode' },
);

export const PlanType = Type.Union(
  [
    Type.Literal('free'),
    Type.Literal('go'),
    Type.Literal('plus'),
    Type.Literal('pro'),
    Type.Literal('prolite'),
    Type.Literal('promax'),
    Type.Literal('team'),
    Type.Literal('self_serve_business_prolite'),
    Type.Literal('self_serve_business_usage_based'),
    Type.Literal('business'),
    Type.Literal('ent26'),
    Type.Literal('enterprise_cbp_automation'),
    Type.Literal('enterprise_cbp_usage_based'),
    Type.Literal('enterprise'),
    Type.Literal('edu'),
    Type.Literal('edu_plus'),
    Type.Literal('edu_pro'),
    Type.Literal('sci'),
    Type.Literal('sci_plus'),
    Type.Literal('unknown'),
  ],
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

// ---------------------------------------------------------------------------------------------
// Client requests. Gatehouse serves the login variants it can complete offline against a
// configurable issuer: apiKey, chatgpt (browser, PKCE) and chatgptAuthTokens (host-owned).
// The device-code and Amazon Bedrock variants of codex are not served; they fail as unknown
// variants, whose message lists the variants below.

export const LoginAppBrand = Type.Union([Type.Literal('codex'), Type.Literal('chatgpt')], {
  title: 'LoginAppBrand',
});

export const LoginAccountParams = Type.Union(
  [
    Type.Object(
      { type: Type.Literal('apiKey', { title: 'ApiKeyv2::LoginAccountParamsType' }), apiKey: Type.String() },
      { title: 'ApiKeyv2::LoginAccountParams' },
    ),
    Type.Object(
      {
        type: Type.Literal('chatgpt', { title: 'Chatgptv2::LoginAccountParamsType' }),
        appBrand: Type.Optional(Type.Union([LoginAppBrand, Type.Null()], { default: null })),
        codexStreamlinedLogin: Type.Optional(Type.Boolean()),
        useHostedLoginSuccessPage: Type.Optional(Type.Boolean()),
      },
      { title: 'Chatgptv2::LoginAccountParams' },
    ),
    Type.Object(
      { type: Type.Literal('chatgptDeviceCode', { title: 'ChatgptDeviceCodev2::LoginAccountParamsType' }) },
      { title: 'ChatgptDeviceCodev2::LoginAccountParams' },
    ),
    Type.Object(
      {
        type: Type.Literal('chatgptAuthTokens', { title: 'ChatgptAuthTokensv2::LoginAccountParamsType' }),
        accessToken: Type.String({
          description:
            'Access token (JWT) supplied by the client. This token is used for backend API requests and email extraction.',
        }),
        chatgptAccountId: Type.String({
          description: 'Workspace/account identifier supplied by the client.',
        }),
        chatgptPlanType: Type.Optional(
          Type.Union([Type.String(), Type.Null()], {
            description:
              'Optional plan type supplied by the client.\n\nWhen `null`, Codex attempts to derive the plan type from access-token claims. If unavailable, the plan defaults to `unknown`.',
          }),
        ),
      },
      {
        title: 'ChatgptAuthTokensv2::LoginAccountParams',
        description:
          '[UNSTABLE] FOR OPENAI INTERNAL USE ONLY - DO NOT USE. The access token must contain the same scopes that Codex-managed ChatGPT auth tokens have.',
      },
    ),
    // Declared so decode errors list codex's variants; Gatehouse refuses these logins (account-service).
    Type.Object(
      {
        type: Type.Literal('amazonBedrock', { title: 'AmazonBedrockv2::LoginAccountParamsType' }),
        apiKey: Type.String(),
        region: Type.String(),
      },
      {
        title: 'AmazonBedrockv2::LoginAccountParams',
        description: '[UNSTABLE] Managed Amazon Bedrock login is experimental.',
      },
    ),
    Type.Object(
      {
        type: Type.Literal('amazonBedrockAccessKeys', {
          title: 'AmazonBedrockAccessKeysv2::LoginAccountParamsType',
        }),
        accessKeyId: Type.String(),
        region: Type.String(),
        secretAccessKey: Type.String(),
        sessionToken: Type.Optional(Type.Union([Type.String(), Type.Null()])),
      },
      {
        title: 'AmazonBedrockAccessKeysv2::LoginAccountParams',
        description: '[UNSTABLE] Managed Amazon Bedrock AWS access key login is experimental.',
      },
    ),
  ],
  { title: 'LoginAccountParams' },
);

export const LoginAccountResponse = Type.Union(
  [
    Type.Object(
      { type: Type.Literal('apiKey', { title: 'ApiKeyv2::LoginAccountResponseType' }) },
      { title: 'ApiKeyv2::LoginAccountResponse' },
    ),
    Type.Object(
      {
        type: Type.Literal('chatgpt', { title: 'Chatgptv2::LoginAccountResponseType' }),
        loginId: Type.String(),
        authUrl: Type.String({
          description: 'URL the client should open in a browser to initiate the OAuth flow.',
        }),
      },
      { title: 'Chatgptv2::LoginAccountResponse' },
    ),
    Type.Object(
      { type: Type.Literal('chatgptAuthTokens', { title: 'ChatgptAuthTokensv2::LoginAccountResponseType' }) },
      { title: 'ChatgptAuthTokensv2::LoginAccountResponse' },
    ),
  ],
  { title: 'LoginAccountResponse' },
);

export const CancelLoginAccountParams = Type.Object(
  { loginId: Type.String() },
  { title: 'CancelLoginAccountParams' },
);

export const CancelLoginAccountResponse = Type.Object(
  {
    status: Type.Union([Type.Literal('canceled'), Type.Literal('notFound')], {
      title: 'CancelLoginAccountStatus',
    }),
  },
  { title: 'CancelLoginAccountResponse' },
);

export const GetAccountParams = Type.Object(
  {
    refreshToken: Type.Optional(
      Type.Boolean({
        description:
          'When `true`, requests a proactive token refresh before returning.\n\nIn managed auth mode this triggers the normal refresh-token flow. In external auth mode this flag is ignored. Clients should refresh tokens themselves and call `account/login/start` with `chatgptAuthTokens`.',
      }),
    ),
  },
  { title: 'GetAccountParams' },
);

export const Account = Type.Union(
  [
    Type.Object({ type: Type.Literal('apiKey', { title: 'ApiKeyAccountType' }) }, { title: 'ApiKeyAccount' }),
    Type.Object(
      {
        type: Type.Literal('chatgpt', { title: 'ChatgptAccountType' }),
        email: Type.Union([Type.String(), Type.Null()]),
        planType: PlanType,
        workspaceName: Type.Optional(
          Type.Union([Type.String(), Type.Null()], {
            description: 'Display name of the selected ChatGPT workspace, when available.',
          }),
        ),
      },
      { title: 'ChatgptAccount' },
    ),
  ],
  { title: 'Account' },
);

export const AccountRoutingOverride = Type.Union(
  [Type.Literal('NO_CONSTRAINT'), Type.Literal('us'), Type.Literal('us_cr')],
  {
    title: 'AccountRoutingOverride',
    description: 'Backend routing policy. Wire values match the accounts/check contract.',
  },
);

export const WorkspaceRouting = Type.Object(
  {
    chatgptAccountId: Type.String(),
    backendOrigin: Type.String(),
    accountRoutingOverride: AccountRoutingOverride,
  },
  { title: 'WorkspaceRouting' },
);

export const GetAccountResponse = Type.Object(
  {
    account: Type.Union([Account, Type.Null()]),
    userId: Type.Optional(
      Type.Union([Type.String(), Type.Null()], {
        default: null,
        description: 'ChatGPT user ID belonging to this account response, when available.',
      }),
    ),
    requiresOpenaiAuth: Type.Boolean(),
    workspaceRouting: Type.Optional(Type.Union([WorkspaceRouting, Type.Null()])),
  },
  { title: 'GetAccountResponse' },
);

export const LogoutAccountResponse = Type.Object({}, { title: 'LogoutAccountResponse' });

export const GetAuthStatusParams = Type.Object(
  {
    includeToken: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
    refreshToken: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
  },
  { title: 'GetAuthStatusParams' },
);

export const GetAuthStatusResponse = Type.Object(
  {
    authMethod: Type.Union([AuthMode, Type.Null()]),
    authToken: Type.Union([Type.String(), Type.Null()]),
    requiresOpenaiAuth: Type.Union([Type.Boolean(), Type.Null()]),
  },
  { title: 'GetAuthStatusResponse' },
);

export const AccountLoginCompletedNotification = Type.Object(
  {
    loginId: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    success: Type.Boolean(),
    error: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    onboardingEntrypoint: Type.Optional(
      Type.Union([
        Type.Union([Type.Literal('life_sciences')], { title: 'DesktopOnboardingEntrypoint' }),
        Type.Null(),
      ]),
    ),
  },
  { title: 'AccountLoginCompletedNotification' },
);

export const accountRequests = {
  'account/login/start': defineClientRequest({
    params: LoginAccountParams,
    result: LoginAccountResponse,
    experimentalUse: (p) =>
      p.type === 'chatgptAuthTokens' ? 'account/login/start.chatgptAuthTokens' : undefined,
    scope: 'account-auth',
    version: 'v2',
  }),
  'account/login/cancel': defineClientRequest({
    params: CancelLoginAccountParams,
    result: CancelLoginAccountResponse,
    scope: 'account-auth',
    version: 'v2',
  }),
  'account/read': defineClientRequest({
    params: GetAccountParams,
    result: GetAccountResponse,
    scope: 'account-auth',
    version: 'v2',
  }),
  'account/logout': defineClientRequest({
    // codex's `params` is a unit; named here so the schema generators can refer to it.
    params: Type.Null({ title: 'LogoutAccountParams' }),
    result: LogoutAccountResponse,
    paramsRequired: false,
    scope: 'account-auth',
    version: 'v2',
  }),
  getAuthStatus: defineClientRequest({
    params: GetAuthStatusParams,
    result: GetAuthStatusResponse,
    scope: 'account-auth',
    version: 'v1',
  }),
};

export const accountServerRequests = {
  'account/chatgptAuthTokens/refresh': defineServerRequest({
    params: ChatgptAuthTokensRefreshParams,
    result: ChatgptAuthTokensRefreshResponse,
    timeoutMs: 10_000,
  }),
};

export const accountNotifications = {
  'account/updated': defineNotification({ params: AccountUpdatedNotification, version: 'v2' }),
  'account/login/completed': defineNotification({ params: AccountLoginCompletedNotification, version: 'v2' }),
};

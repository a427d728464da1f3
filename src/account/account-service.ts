/**
 * The account requests of spec C, served one at a time by the account scope's queue
 * (`account/login/start`, `account/login/cancel`, `account/read`, `account/logout`,
 * `getAuthStatus`). The credentials themselves live in the credentials actor; this service decides
 * who may log in, stores what must be stored, finds the workspace's backend and tells every
 * connection what changed, in codex's order: response, `account/login/completed`,
 * `account/updated`.
 */
import type { Static } from 'typebox';
import { BrokerError, ErrorCode, ProtocolError, invalidRequest } from '../protocol/errors.js';
import type {
  CancelLoginAccountParams,
  GetAccountParams,
  GetAccountResponse,
  GetAuthStatusParams,
  LoginAccountParams,
} from '../protocol/methods/account.js';
import type { HandlerContext } from '../broker/handlers.js';
import type { BrokerServices } from '../broker/services.js';
import { AuthFile } from '../auth/auth-file.js';
import { InvalidJwtError, parseChatgptJwt } from '../auth/jwt.js';
import {
  EXTERNAL_AUTH_ACTIVE_MESSAGE,
  forcedMethodRefusal,
  workspaceLoginRefusal,
} from '../auth/login-policy.js';
import {
  DISCOVERY_TIMEOUT_MS,
  RoutingError,
  routingFromAccountsCheck,
  type WorkspaceRouting,
} from '../auth/workspace-routing.js';
import { CLOUD_CONFIG_ATTEMPTS, WORKSPACE_PLANS, cloudConfigFailure } from '../auth/cloud-requirements.js';
import {
  BrowserLogin,
  CLIENT_ID,
  LOGIN_CANCELLED,
  LOGIN_NOT_COMPLETED,
  type IssuedTokens,
  type LoginOutcome,
} from '../auth/browser-login.js';
import { issuerTokens } from '../auth/issuer.js';
import {
  CREDENTIALS_ACTOR,
  CredentialsMessage,
  type CredentialsSnapshot,
} from '../../actors/account/credentials.actor.js';
import { planTypeOf, type Credentials } from '../../actors/account/credentials.js';

type LoginParams = Static<typeof LoginAccountParams>;

/** What the last login found out about its workspace; cleared by the next login or logout. */
interface WorkspaceState {
  routing?: WorkspaceRouting;
  /** The failure text `account/read` repeats as -32603 (spec C.3). */
  failure?: string;
}

export const ANNOUNCE_STORED_LOGIN = '$account/announceStored';
export const BROWSER_LOGIN_FINISHED = '$account/browserLogin/finished';

export class AccountService {
  private readonly authFile: AuthFile;
  private pendingLogin?: BrowserLogin;
  private workspace: WorkspaceState = {};

  constructor(
    private readonly services: BrokerServices,
    /** Puts work on the account queue (used when a browser comes back). */
    private readonly enqueue: (method: string, params: unknown) => Promise<unknown>,
  ) {
    this.authFile = new AuthFile(services.codexHome);
  }

  /** Installs what auth.json holds, so a restarted broker is logged in as before. */
  async restore(): Promise<void> {
    const stored = this.authFile.read();
    if (!stored) return;
    if (stored.auth_mode === 'apikey' && stored.OPENAI_API_KEY) {
      await this.install({ mode: 'apikey', apiKey: stored.OPENAI_API_KEY });
    } else if (stored.tokens) {
      await this.install(
        managedCredentials(stored.tokens.id_token, stored.tokens.access_token, stored.tokens.refresh_token),
      );
    }
    await this.services.setAuthenticated(true);
  }

  /**
   * A newly initialized connection hears about a stored browser login once routing is known
   * (spec B.3, C.5). API keys and host-owned tokens are not announced: their client logged in itself.
   */
  async announceStored(body: { connectionId: string }): Promise<void> {
    const credentials = (await this.snapshot())?.credentials;
    if (credentials?.mode !== 'chatgpt') return;
    if (this.workspace.failure === undefined && this.workspace.routing === undefined) {
      await this.discover(credentials);
    }
    if (this.workspace.failure !== undefined) return;
    await this.services.notify(body.connectionId, 'account/updated', {
      authMode: 'chatgpt',
      planType: planTypeOf(credentials),
    });
  }

  /** Refreshes a managed browser login at the issuer and stores the new tokens. */
  async refreshManaged(current: Extract<Credentials, { mode: 'chatgpt' }>): Promise<Credentials> {
    let tokens: IssuedTokens;
    try {
      tokens = await issuerTokens(this.services.backend, this.services.settings.loginIssuer, {
        grant_type: 'refresh_token',
        refresh_token: current.refreshToken,
        client_id: CLIENT_ID,
      });
    } catch (e) {
      throw new BrokerError('AUTH_REFRESH_FAILED', (e as Error).message);
    }
    const next = managedFromIssued({ ...tokens, refreshToken: tokens.refreshToken || current.refreshToken });
    this.store(next);
    return next;
  }

  /** Ends a pending browser login (its callback server) when the broker stops. */
  close(): void {
    this.pendingLogin?.cancel(LOGIN_NOT_COMPLETED);
    this.pendingLogin = undefined;
  }

  async loginStart(params: LoginParams, ctx: HandlerContext): Promise<unknown> {
    const current = await this.snapshot();
    const externalActive = current?.credentials.mode === 'chatgptAuthTokens';
    const forced = this.services.codex.forcedLoginMethod;
    switch (params.type) {
      case 'apiKey': {
        if (externalActive) throw invalidRequest(EXTERNAL_AUTH_ACTIVE_MESSAGE);
        refuse(forcedMethodRefusal('apiKey', forced));
        try {
          this.authFile.write({
            auth_mode: 'apikey',
            OPENAI_API_KEY: params.apiKey,
            tokens: null,
            last_refresh: null,
          });
        } catch (e) {
          throw new ProtocolError(ErrorCode.Internal, `failed to save api key: ${describeFsError(e)}`);
        }
        this.endPendingLogin(ctx, LOGIN_CANCELLED);
        await this.install({ mode: 'apikey', apiKey: params.apiKey });
        ctx.after(() => this.announceSuccess(null, 'apikey', null));
        return { type: 'apiKey' };
      }
      case 'chatgpt': {
        if (externalActive) throw invalidRequest(EXTERNAL_AUTH_ACTIVE_MESSAGE);
        refuse(forcedMethodRefusal('chatgpt', forced));
        // A new browser login replaces the pending one, whose client learns it was cancelled.
        this.endPendingLogin(ctx, LOGIN_CANCELLED);
        const login = new BrowserLogin({
          issuer: this.services.settings.loginIssuer,
          port: this.services.settings.loginCallbackPort,
          originator: this.services.originator(ctx.session.clientName),
          exchange: (form) => issuerTokens(this.services.backend, this.services.settings.loginIssuer, form),
        });
        try {
          await login.start();
        } catch (e) {
          throw new ProtocolError(ErrorCode.Internal, `failed to start login server: ${describeFsError(e)}`);
        }
        this.pendingLogin = login;
        void login.outcome.then((outcome) =>
          this.enqueue(BROWSER_LOGIN_FINISHED, { loginId: login.loginId, outcome }).catch((e: unknown) =>
            this.services.log.error({ err: (e as Error).message }, 'could not finish a browser login'),
          ),
        );
        return { type: 'chatgpt', loginId: login.loginId, authUrl: login.authUrl };
      }
      case 'chatgptDeviceCode':
      case 'amazonBedrock':
      case 'amazonBedrockAccessKeys': {
        // Codex's refusals first, so a host sees the same answer as from codex where one applies.
        if (externalActive) throw invalidRequest(EXTERNAL_AUTH_ACTIVE_MESSAGE);
        refuse(forcedMethodRefusal(params.type, forced));
        throw invalidRequest(
          `${params.type} login is not supported by Gatehouse; use chatgpt (browser), chatgptAuthTokens or apiKey`,
        );
      }
      case 'chatgptAuthTokens': {
        // Order of checks (spec C.2): experimental gate (the connection's), forced method,
        // workspace, then the token itself.
        refuse(forcedMethodRefusal('chatgptAuthTokens', forced));
        refuse(workspaceLoginRefusal(params.chatgptAccountId, this.services.codex.forcedChatgptWorkspaceIds));
        let claims;
        try {
          claims = parseChatgptJwt(params.accessToken);
        } catch (e) {
          if (!(e instanceof InvalidJwtError)) throw e;
          throw new ProtocolError(ErrorCode.Internal, `failed to set external auth: ${e.message}`);
        }
        this.endPendingLogin(ctx, LOGIN_CANCELLED);
        const credentials: Credentials = {
          mode: 'chatgptAuthTokens',
          accessToken: params.accessToken,
          accountId: params.chatgptAccountId,
          planType: params.chatgptPlanType ?? claims.planType ?? 'unknown',
          claims,
          owner: ctx.connectionId,
        };
        await this.install(credentials);
        // Workspace plans hold the response until their requirements are loaded (spec C.3).
        const requirementsFailure = WORKSPACE_PLANS.has(credentials.planType)
          ? await this.loadCloudRequirements()
          : undefined;
        ctx.after(() => this.completeChatgptLogin(null, credentials, requirementsFailure));
        return { type: 'chatgptAuthTokens' };
      }
    }
  }

  /** The browser came back (or the attempt ended on its own): runs on the account queue. */
  async browserLoginFinished(body: { loginId: string; outcome: LoginOutcome }): Promise<void> {
    const login = this.pendingLogin;
    // Replaced, cancelled or logged out: whoever ended it has already told the clients.
    if (!login || login.loginId !== body.loginId) return;
    this.pendingLogin = undefined;
    if (!body.outcome.ok) {
      await this.announceFailure(login.loginId, body.outcome.error);
      return;
    }
    const credentials = managedFromIssued(body.outcome.tokens);
    try {
      this.store(credentials);
    } catch (e) {
      await this.announceFailure(
        login.loginId,
        `Login server error: failed to save tokens: ${describeFsError(e)}`,
      );
      return;
    }
    await this.install(credentials);
    await this.completeChatgptLogin(login.loginId, credentials, undefined);
  }

  loginCancel(
    params: Static<typeof CancelLoginAccountParams>,
    ctx: HandlerContext,
  ): { status: 'canceled' | 'notFound' } {
    if (!UUID.test(params.loginId)) throw invalidRequest(`invalid login id: ${params.loginId}`);
    const login = this.pendingLogin;
    if (!login || login.loginId !== params.loginId.toLowerCase()) return { status: 'notFound' };
    this.endPendingLogin(ctx, LOGIN_NOT_COMPLETED);
    return { status: 'canceled' };
  }

  async read(params: Static<typeof GetAccountParams>): Promise<Static<typeof GetAccountResponse>> {
    const snap = await this.snapshot();
    if (!snap) return { account: null, userId: null, requiresOpenaiAuth: true, workspaceRouting: null };
    const { credentials } = snap;
    if (credentials.mode === 'apikey') {
      return { account: { type: 'apiKey' }, userId: null, requiresOpenaiAuth: true, workspaceRouting: null };
    }
    // Only a refresh or a discovery (which may meet a 401) can replace the credentials read above;
    // without either, reading them again would only cost a second ask.
    let mayHaveChanged = false;
    // `refreshToken: true` asks a managed login for a proactive refresh; host-owned tokens ignore it.
    if (params.refreshToken === true && credentials.mode === 'chatgpt') {
      mayHaveChanged = true;
      await this.services.auth
        .unauthorized({ mode: 'chatgpt', bearer: '', accountId: null, generation: snap.generation })
        .catch((e: unknown) =>
          this.services.log.warn({ err: (e as Error).message }, 'proactive refresh failed'),
        );
    }
    if (this.workspace.failure === undefined && this.workspace.routing === undefined) {
      mayHaveChanged = true;
      await this.discover(credentials);
    }
    if (this.workspace.failure !== undefined)
      throw new ProtocolError(ErrorCode.Internal, this.workspace.failure);
    const fresh = mayHaveChanged ? ((await this.snapshot())?.credentials ?? credentials) : credentials;
    const claims = fresh.mode === 'apikey' ? null : fresh.claims;
    return {
      account: {
        type: 'chatgpt',
        email: claims?.email ?? null,
        planType: planTypeOf(fresh) as never,
        workspaceName: null,
      },
      userId: claims?.userId ?? null,
      requiresOpenaiAuth: true,
      workspaceRouting: this.workspace.routing ?? null,
    };
  }

  async logout(ctx: HandlerContext): Promise<Record<string, never>> {
    this.endPendingLogin(ctx, LOGIN_NOT_COMPLETED);
    try {
      this.authFile.delete();
    } catch (e) {
      throw new ProtocolError(ErrorCode.Internal, `failed to remove auth.json: ${describeFsError(e)}`);
    }
    await this.services.system.ask(CREDENTIALS_ACTOR, CredentialsMessage.clear, null);
    this.workspace = {};
    ctx.after(async () => {
      await this.services.setAuthenticated(false);
      // Always sent, even when nobody was logged in (spec C.5).
      await this.services.broadcast('account/updated', { authMode: null, planType: null });
    });
    return {};
  }

  async authStatus(params: Static<typeof GetAuthStatusParams>): Promise<{
    authMethod: Credentials['mode'] | null;
    authToken: string | null;
    requiresOpenaiAuth: boolean | null;
  }> {
    const snap = await this.snapshot();
    if (!snap) return { authMethod: null, authToken: null, requiresOpenaiAuth: true };
    const c = snap.credentials;
    const token = c.mode === 'apikey' ? c.apiKey : c.accessToken;
    return {
      authMethod: c.mode,
      authToken: params.includeToken === true ? token : null,
      requiresOpenaiAuth: true,
    };
  }

  private store(credentials: Extract<Credentials, { mode: 'chatgpt' }>): void {
    this.authFile.write({
      auth_mode: 'chatgpt',
      OPENAI_API_KEY: null,
      tokens: {
        id_token: credentials.idToken,
        access_token: credentials.accessToken,
        refresh_token: credentials.refreshToken,
        account_id: credentials.accountId,
      },
      last_refresh: new Date().toISOString(),
    });
  }

  private async install(credentials: Credentials): Promise<void> {
    this.workspace = {};
    await this.services.system.ask(CREDENTIALS_ACTOR, CredentialsMessage.install, credentials);
  }

  private snapshot(): Promise<CredentialsSnapshot | null> {
    return this.services.system.ask<CredentialsSnapshot | null>(
      CREDENTIALS_ACTOR,
      CredentialsMessage.snapshot,
      null,
    );
  }

  /** Ends the pending browser login, if any; its client hears about it after this reply. */
  private endPendingLogin(ctx: HandlerContext, error: string): void {
    const login = this.pendingLogin;
    if (!login) return;
    this.pendingLogin = undefined;
    if (login.cancel(error)) ctx.after(() => this.announceFailure(login.loginId, error));
  }

  /** Discovery, then the notifications of a ChatGPT login (spec C.3). */
  private async completeChatgptLogin(
    loginId: string | null,
    credentials: Credentials,
    requirementsFailure: string | undefined,
  ): Promise<void> {
    await this.discover(credentials);
    const failure = requirementsFailure ?? this.workspace.failure;
    if (failure !== undefined) {
      this.workspace.failure = failure;
      // The tokens stay installed; only the completion says something went wrong.
      await this.announceFailure(loginId, failure);
      return;
    }
    await this.announceSuccess(loginId, credentials.mode, planTypeOf(credentials));
  }

  private async discover(credentials: Credentials): Promise<void> {
    if (credentials.mode === 'apikey') return;
    const accountId =
      credentials.mode === 'chatgptAuthTokens'
        ? credentials.accountId
        : (credentials.accountId ?? credentials.claims.accountId);
    try {
      if (!accountId)
        throw new RoutingError('workspace routing discovery failed', 'the login names no workspace');
      let answer;
      try {
        answer = await this.services.backend.getJson('/wham/accounts/check', {
          timeoutMs: DISCOVERY_TIMEOUT_MS,
        });
      } catch (e) {
        throw new RoutingError('workspace routing discovery failed', (e as Error).message);
      }
      this.workspace = {
        routing: routingFromAccountsCheck(
          answer.status,
          answer.body,
          accountId,
          this.services.codex.chatgptBaseUrl,
        ),
      };
    } catch (e) {
      if (!(e instanceof RoutingError)) throw e;
      this.services.log.warn({ detail: e.detail }, 'workspace routing discovery failed');
      this.workspace = { failure: e.reported };
    }
  }

  /** Five attempts at the workspace's cloud requirements; the failure text, if they all fail. */
  private async loadCloudRequirements(): Promise<string | undefined> {
    let reason = 'no attempt made';
    for (let attempt = 0; attempt < CLOUD_CONFIG_ATTEMPTS; attempt++) {
      if (attempt > 0) await sleep(backoffMs(this.services.settings.retryBaseDelayMs, attempt - 1));
      try {
        const answer = await this.services.backend.getJson('/wham/config/bundle', {
          timeoutMs: this.services.settings.upstreamRequestTimeoutMs,
        });
        if (answer.status >= 200 && answer.status < 300) return undefined;
        reason = `HTTP ${answer.status}`;
      } catch (e) {
        reason = (e as Error).message;
      }
    }
    return cloudConfigFailure(reason);
  }

  private async announceSuccess(
    loginId: string | null,
    authMode: Credentials['mode'],
    planType: string | null,
  ): Promise<void> {
    await this.services.broadcast('account/login/completed', {
      loginId,
      success: true,
      error: null,
      onboardingEntrypoint: null,
    });
    await this.services.setAuthenticated(true);
    await this.services.broadcast('account/updated', { authMode, planType });
  }

  private async announceFailure(loginId: string | null, error: string): Promise<void> {
    await this.services.broadcast('account/login/completed', {
      loginId,
      success: false,
      error,
      onboardingEntrypoint: null,
    });
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function refuse(message: string | undefined): void {
  if (message !== undefined) throw invalidRequest(message);
}

function managedCredentials(
  idToken: string,
  accessToken: string,
  refreshToken: string,
): Extract<Credentials, { mode: 'chatgpt' }> {
  const claims = parseChatgptJwt(idToken);
  return { mode: 'chatgpt', idToken, accessToken, refreshToken, accountId: claims.accountId, claims };
}

function managedFromIssued(tokens: IssuedTokens): Extract<Credentials, { mode: 'chatgpt' }> {
  return managedCredentials(tokens.idToken, tokens.accessToken, tokens.refreshToken);
}

/** Doubling delays with up to 10% jitter, as codex's backoff. */
export function backoffMs(baseMs: number, attempt: number): number {
  const delay = baseMs * 2 ** attempt;
  return Math.round(delay * (1 + Math.random() * 0.1));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A file-system or socket error without paths or contents that could hold secrets. */
function describeFsError(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  return code ? `${code}` : (e as Error).message;
}

/**
 * A browser login (spec C.2 `chatgpt`): a callback server on 127.0.0.1, an authorization URL with
 * PKCE (S256) and a random state, and the code exchange at the issuer once the browser comes back.
 * The server never opens a browser; the client shows the URL. One attempt per instance.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** codex's OAuth client id and scopes. */
export const CLIENT_ID = 'app_EMoamEEZ73f0CkXaXp7hrann';
const SCOPES = 'openid profile email offline_access api.connectors.read api.connectors.invoke';
/** Pending browser logins are abandoned after 10 minutes, as in codex. */
export const LOGIN_TIMEOUT_MS = 10 * 60_000;

export const LOGIN_CANCELLED = 'Login server error: Login cancelled';
export const LOGIN_NOT_COMPLETED = 'Login server error: Login was not completed';
export const LOGIN_TIMED_OUT = 'Login timed out';

export interface IssuedTokens {
  idToken: string;
  accessToken: string;
  refreshToken: string;
}

export interface BrowserLoginOptions {
  issuer: string;
  port: number;
  originator: string;
  /** Exchanges the authorization code at the issuer's token endpoint. */
  exchange(form: Record<string, string>): Promise<IssuedTokens>;
  timeoutMs?: number;
}

export type LoginOutcome = { ok: true; tokens: IssuedTokens } | { ok: false; error: string };

export class BrowserLogin {
  readonly loginId = randomUUID();
  private readonly verifier = randomBytes(32).toString('base64url');
  private readonly state = randomBytes(32).toString('base64url');
  private server?: Server;
  private timer?: NodeJS.Timeout;
  private settled = false;
  private resolveOutcome!: (o: LoginOutcome) => void;
  /** Settles once: tokens from the issuer, or why the attempt ended. */
  readonly outcome = new Promise<LoginOutcome>((resolve) => (this.resolveOutcome = resolve));
  authUrl = '';

  constructor(private readonly options: BrowserLoginOptions) {}

  /** Starts the callback server; rejects with the listen error (port taken, ...). */
  async start(): Promise<void> {
    const server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      if (url.pathname !== '/auth/callback') {
        res.writeHead(404).end();
        return;
      }
      void this.callback(url).then(({ status, page }) => {
        res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', connection: 'close' }).end(page);
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    const port = (server.address() as AddressInfo).port;
    this.authUrl = this.authorizeUrl(`http://127.0.0.1:${port}/auth/callback`);
    this.timer = setTimeout(
      () => this.finish({ ok: false, error: LOGIN_TIMED_OUT }),
      this.options.timeoutMs ?? LOGIN_TIMEOUT_MS,
    );
    this.timer.unref();
  }

  /** Ends the attempt with an error (replaced, cancelled, logout); no effect once settled. */
  cancel(error: string): boolean {
    if (this.settled) return false;
    this.finish({ ok: false, error });
    return true;
  }

  get isPending(): boolean {
    return !this.settled;
  }

  private authorizeUrl(redirectUri: string): string {
    const challenge = createHash('sha256').update(this.verifier).digest('base64url');
    const query = new URLSearchParams({
      response_type: 'code',
      client_id: CLIENT_ID,
      redirect_uri: redirectUri,
      code_challenge: challenge,
      code_challenge_method: 'S256',
      state: this.state,
      scope: SCOPES,
      id_token_add_organizations: 'true',
      codex_cli_simplified_flow: 'true',
      originator: this.options.originator,
    });
    return `${this.options.issuer.replace(/\/+$/, '')}/oauth/authorize?${query.toString()}`;
  }

  private async callback(url: URL): Promise<{ status: number; page: string }> {
    if (this.settled) return { status: 410, page: page('This login attempt has ended.') };
    if (url.searchParams.get('state') !== this.state) {
      // Not ours (or forged): the attempt goes on, waiting for the real redirect.
      return { status: 400, page: page('State mismatch: this link does not belong to the pending login.') };
    }
    const denied = url.searchParams.get('error');
    const code = url.searchParams.get('code');
    if (denied || !code) {
      this.finish({ ok: false, error: `Login server error: ${denied ?? 'missing authorization code'}` });
      return { status: 400, page: page('Sign-in was not completed.') };
    }
    try {
      const port = (this.server!.address() as AddressInfo).port;
      const tokens = await this.options.exchange({
        grant_type: 'authorization_code',
        code,
        redirect_uri: `http://127.0.0.1:${port}/auth/callback`,
        client_id: CLIENT_ID,
        code_verifier: this.verifier,
      });
      this.finish({ ok: true, tokens });
      return { status: 200, page: page('Signed in. You can close this window.') };
    } catch (e) {
      this.finish({ ok: false, error: `Login server error: ${(e as Error).message}` });
      return { status: 502, page: page('Sign-in failed while exchanging the code.') };
    }
  }

  private finish(outcome: LoginOutcome): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.timer);
    // Stop listening; the browser's request in flight still gets its page (sent with
    // `connection: close`), and idle keep-alive sockets go now.
    this.server?.close();
    this.server?.closeIdleConnections();
    this.resolveOutcome(outcome);
  }
}

function page(message: string): string {
  return `<!doctype html><meta charset="utf-8"><title>Gatehouse sign-in</title><p>${message}</p>\n`;
}

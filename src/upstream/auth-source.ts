/**
 * What the upstream client needs from the account side: the credentials to send, and a way to
 * report that the backend refused them. The credentials actor implements it; the refresh loop of
 * spec C.8 lives behind `unauthorized`.
 */
export type UpstreamAuthMode = 'apikey' | 'chatgpt' | 'chatgptAuthTokens';

export interface UpstreamAuth {
  mode: UpstreamAuthMode;
  /** Sent as `Authorization: Bearer <bearer>`; a secret, never logged. */
  bearer: string;
  /** Sent as `chatgpt-account-id` when present. */
  accountId: string | null;
  /** Changes each time the credentials are replaced, so a stale 401 does not refresh twice. */
  generation: number;
}

export interface AuthSource {
  /** The credentials in force, or null when nobody is logged in. */
  current(): Promise<UpstreamAuth | null>;
  /**
   * The backend answered 401 to a request made with `failed`. Resolves with credentials to retry
   * with (fresh ones, or newer ones another request already obtained). Rejects with an Error whose
   * message is the failure text of spec C.8 (`auth refresh request timed out after 10s`, ...)
   * when no new credentials can be had. Any number of concurrent calls cause one refresh.
   */
  unauthorized(failed: UpstreamAuth): Promise<UpstreamAuth>;
}

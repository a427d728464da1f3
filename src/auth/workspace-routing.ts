/**
 * Workspace routing discovery (spec C.3): after a ChatGPT login, `GET /wham/accounts/check`
 * tells which backend origin serves the selected workspace. codex reports every discovery
 * failure to the client as one generic text and keeps the detail for its log; the HTTPS rule is
 * reported as it is.
 */
export const DISCOVERY_FAILED = 'workspace routing discovery failed';
export const HTTPS_ORIGIN_REQUIRED = 'workspace backend must use an HTTPS origin without credentials';
export const DISCOVERY_TIMEOUT_MS = 15_000;

const OVERRIDES = ['NO_CONSTRAINT', 'us', 'us_cr'] as const;
export type AccountRoutingOverride = (typeof OVERRIDES)[number];

export interface WorkspaceRouting {
  chatgptAccountId: string;
  backendOrigin: string;
  accountRoutingOverride: AccountRoutingOverride;
}

export class RoutingError extends Error {
  override name = 'RoutingError';
  constructor(
    /** What the client is told. */
    readonly reported: string,
    /** What the log says. */
    readonly detail: string,
  ) {
    super(reported);
  }
}

/** Reads an accounts/check answer for the selected account. */
export function routingFromAccountsCheck(
  status: number,
  body: unknown,
  accountId: string,
  chatgptBaseUrl: string,
): WorkspaceRouting {
  if (status === 401)
    throw new RoutingError(DISCOVERY_FAILED, 'workspace routing discovery unauthorized (401)');
  if (status < 200 || status >= 300) {
    throw new RoutingError(DISCOVERY_FAILED, `workspace routing discovery failed (HTTP ${status})`);
  }
  const accounts = (body as { accounts?: unknown } | null)?.accounts;
  if (!Array.isArray(accounts)) {
    throw new RoutingError(DISCOVERY_FAILED, 'workspace routing discovery returned no account list');
  }
  const matches = accounts.filter((a) => (a as { id?: unknown } | null)?.id === accountId) as Record<
    string,
    unknown
  >[];
  if (matches.length === 0) {
    throw new RoutingError(DISCOVERY_FAILED, 'selected workspace missing from routing discovery');
  }
  if (matches.length > 1)
    throw new RoutingError(DISCOVERY_FAILED, 'duplicate workspace in routing discovery');
  const entry = matches[0]!;
  const override = entry.account_routing_override;
  if (!OVERRIDES.includes(override as AccountRoutingOverride)) {
    throw new RoutingError(
      DISCOVERY_FAILED,
      'workspace routing discovery returned an unknown routing override',
    );
  }
  const declared = entry.workspace_backend_origin;
  const origin = declared === 'NO_CONSTRAINT' || declared === undefined ? chatgptBaseUrl : declared;
  return {
    chatgptAccountId: accountId,
    backendOrigin: httpsOrigin(origin),
    accountRoutingOverride: override as AccountRoutingOverride,
  };
}

/** The origin of a backend URL, which must be HTTPS and carry no credentials. */
export function httpsOrigin(url: unknown): string {
  if (typeof url !== 'string' || !URL.canParse(url)) {
    throw new RoutingError(HTTPS_ORIGIN_REQUIRED, 'workspace backend origin is not a URL');
  }
  const parsed = new URL(url);
  if (parsed.protocol !== 'https:' || parsed.username !== '' || parsed.password !== '') {
    throw new RoutingError(HTTPS_ORIGIN_REQUIRED, HTTPS_ORIGIN_REQUIRED);
  }
  return parsed.origin;
}

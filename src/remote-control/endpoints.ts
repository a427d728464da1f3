/**
 * The backend URLs remote control talks to (spec B.2), derived from `chatgpt_base_url`: a `/` is
 * appended to the base and the fixed relative paths are resolved against it; the server
 * WebSocket takes the base's scheme with `https`→`wss`, `http`→`ws`. Only ChatGPT's hosts (over
 * HTTPS) and loopback are accepted: the server WebSocket hands remote users a JSON-RPC session
 * on this machine, so it must not be pointed anywhere else. The error text shows the configured
 * base exactly as given, as codex does.
 */

export interface RemoteControlEndpoints {
  /** `POST`, ChatGPT bearer. */
  enrollUrl: URL;
  /** `POST`, ChatGPT bearer. */
  refreshUrl: URL;
  /** `POST`, remote-control token. */
  pairUrl: URL;
  /** `POST`, remote-control token. */
  pairStatusUrl: URL;
  /** `GET` with Upgrade, remote-control token; ws: or wss:. Also the enrollment's storage key. */
  websocketUrl: URL;
  /** `environments/<env>/clients` (list), or `.../clients/<clientId>` (revoke); ChatGPT bearer. */
  clientsUrl(environmentId: string, clientId?: string): URL;
}

export class RemoteControlUrlError extends Error {
  override name = 'RemoteControlUrlError';
}

export function remoteControlEndpoints(chatgptBaseUrl: string): RemoteControlEndpoints {
  let base: URL;
  try {
    base = new URL(chatgptBaseUrl);
  } catch {
    throw new RemoteControlUrlError(
      `invalid remote control URL \`${chatgptBaseUrl}\`: ${parseProblem(chatgptBaseUrl)}`,
    );
  }
  const secure = base.protocol === 'https:';
  const allowed =
    (secure && (isChatgptHost(base.hostname) || isLoopback(base.hostname))) ||
    (base.protocol === 'http:' && isLoopback(base.hostname));
  if (!allowed) {
    throw new RemoteControlUrlError(
      `invalid remote control URL \`${chatgptBaseUrl}\`; expected HTTPS URL for chatgpt.com or ` +
        'chatgpt-staging.com, or HTTP/HTTPS URL for localhost',
    );
  }
  if (!base.pathname.endsWith('/')) base.pathname = `${base.pathname}/`;
  const at = (path: string) => new URL(path, base);
  const websocketUrl = at('wham/remote/control/server');
  websocketUrl.protocol = secure ? 'wss:' : 'ws:';
  return {
    enrollUrl: at('wham/remote/control/server/enroll'),
    refreshUrl: at('wham/remote/control/server/refresh'),
    pairUrl: at('wham/remote/control/server/pair'),
    pairStatusUrl: at('wham/remote/control/server/pair/status'),
    websocketUrl,
    clientsUrl: (environmentId, clientId) => {
      const env = encodeURIComponent(environmentId);
      const client = clientId === undefined ? '' : `/${encodeURIComponent(clientId)}`;
      return at(`wham/remote/control/environments/${env}/clients${client}`);
    },
  };
}

function isChatgptHost(host: string): boolean {
  return ['chatgpt.com', 'chatgpt-staging.com'].some(
    (domain) => host === domain || host.endsWith(`.${domain}`),
  );
}

/** `localhost` itself (not its subdomains), 127.0.0.0/8 and ::1, as the URL parser normalized them. */
function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** The Rust `url` crate's words for the two usual mistakes; anything else is just invalid. */
function parseProblem(input: string): string {
  const scheme = /^[a-zA-Z][a-zA-Z0-9+.-]*:/.exec(input);
  if (!scheme) return 'relative URL without a base';
  if (/^\/\/(?:[/?#]|$)/.test(input.slice(scheme[0].length))) return 'empty host';
  return 'invalid URL';
}

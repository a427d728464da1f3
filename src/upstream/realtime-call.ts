/**
 * Realtime WebRTC call creation under ChatGPT auth (spec D.1, a scoped request):
 * `POST {chatgpt_base_url}/codex/realtime/calls?intent=quicksilver&architecture=avas` with the
 * JSON body codex sends to the ChatGPT backend, `{"sdp": <offer>, "session": {...}}`
 * (codex-rs/codex-api/src/endpoint/realtime_call.rs), the credentials, the 401 loop of spec C.8
 * and the scoped headers. The answer is the SDP answer and the call id.
 *
 * The real backend answers the SDP as the body and names the call in `Location`
 * (`.../calls/rtc_...`), which is what codex reads; the local backend answers JSON
 * `{"id", "sdp"}`, which is read too. Failures come back as `{ ok: false, message }` worded as
 * codex words them, never as thrown errors (they cross an actor boundary).
 */
import { UpstreamFailure, displayUrl, isUpstreamFailure, unexpectedStatusText } from './failure.js';
import { openRequest, readText, type UpstreamAgents } from './http-request.js';
import type { AuthSource, UpstreamAuth } from './auth-source.js';
import { authHeaders, currentAuth, withUnauthorizedRetry } from './unauthorized-retry.js';

export const REALTIME_CALLS_QUERY = 'intent=quicksilver&architecture=avas';
const MAX_ANSWER_BYTES = 1024 * 1024;

export interface RealtimeCallRequest {
  /** The WebRTC offer from `transport.sdp`. */
  sdp: string;
  /** The session configuration sent with the call. */
  session: Record<string, unknown>;
  /** user-agent, originator, x-session-id...; the credentials and scoped headers are added. */
  headers: Record<string, string>;
}

export type RealtimeCallAnswer = { ok: true; callId: string; sdp: string } | { ok: false; message: string };

export interface RealtimeCallDeps {
  auth: AuthSource;
  agents: UpstreamAgents;
  chatgptBaseUrl: string;
  timeoutMs: number;
  /** The scoped-headers hook, called for each attempt (the 401 retry included). */
  scoped(auth: UpstreamAuth): Promise<Record<string, string>>;
}

export function realtimeCallsUrl(chatgptBaseUrl: string): URL {
  return new URL(`${chatgptBaseUrl}/codex/realtime/calls?${REALTIME_CALLS_QUERY}`);
}

export async function createRealtimeCall(
  deps: RealtimeCallDeps,
  request: RealtimeCallRequest,
): Promise<RealtimeCallAnswer> {
  const url = realtimeCallsUrl(deps.chatgptBaseUrl);
  const payload = JSON.stringify({ sdp: request.sdp, session: request.session });
  try {
    const first = await currentAuth(deps.auth);
    return await withUnauthorizedRetry(deps.auth, first, async (auth) => {
      const headers = {
        ...authHeaders(auth),
        ...request.headers,
        'content-type': 'application/json',
        ...(await deps.scoped(auth)),
      };
      const res = await openRequest(
        url,
        { method: 'POST', headers, body: payload, timeoutMs: deps.timeoutMs },
        deps.agents,
      );
      const text = await readText(res.body, MAX_ANSWER_BYTES, deps.timeoutMs);
      if (res.status < 200 || res.status >= 300) {
        throw new UpstreamFailure(unexpectedStatusText(res.status, text, url.href, headers), 'status', {
          status: res.status,
        });
      }
      const location = res.headers.location;
      return readAnswer(String(res.headers['content-type'] ?? ''), text, location);
    });
  } catch (e) {
    if (isUpstreamFailure(e)) return { ok: false, message: e.message };
    return { ok: false, message: `POST ${displayUrl(url)} failed: ${(e as Error).message}` };
  }
}

/** The SDP answer and call id of a 2xx answer, or codex's error text. */
export function readAnswer(
  contentType: string,
  body: string,
  location: string | undefined,
): RealtimeCallAnswer {
  if (/^application\/json\b/i.test(contentType.trim())) {
    let parsed: { id?: unknown; sdp?: unknown } | null = null;
    try {
      parsed = JSON.parse(body) as { id?: unknown; sdp?: unknown } | null;
    } catch {
      // fall through: not the JSON it claims to be
    }
    const callId = typeof parsed?.id === 'string' && parsed.id !== '' ? parsed.id : callIdOf(location);
    if (typeof parsed?.sdp !== 'string') {
      return { ok: false, message: 'failed to decode realtime call SDP response: no sdp in the JSON answer' };
    }
    if (callId === undefined) return missingCallId(location);
    return { ok: true, callId, sdp: parsed.sdp };
  }
  const callId = callIdOf(location);
  if (callId === undefined) return missingCallId(location);
  return { ok: true, callId, sdp: body };
}

/** codex's rule: the first path segment of `Location`, from the end, that starts with `rtc_`. */
function callIdOf(location: string | undefined): string | undefined {
  if (!location) return undefined;
  const segments = location.split('?')[0]!.split('/').reverse();
  return segments.find((s) => s.startsWith('rtc_') && s.length > 'rtc_'.length);
}

function missingCallId(location: string | undefined): RealtimeCallAnswer {
  return {
    ok: false,
    message:
      location === undefined
        ? 'realtime call response missing Location'
        : `realtime call Location does not contain a call id: ${location}`,
  };
}

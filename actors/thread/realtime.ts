/**
 * `thread/realtime/start` after its `{}` reply, as far as Gatehouse goes: the outbound request
 * that carries the attestation header (spec D.1). Which outcome, by transport and auth:
 *
 * | transport | auth | outcome |
 * | --- | --- | --- |
 * | `websocket` (the default) | ChatGPT, or nobody logged in | `thread/realtime/error` "realtime conversation requires API key auth" (codex's text, [obs: attest_realtime_ws]); nothing leaves |
 * | `webrtc` | ChatGPT | call creation (scoped POST); then `thread/realtime/started`, `thread/realtime/sdp`, and, as no sideband WebSocket follows, `thread/realtime/error` + `thread/realtime/closed` (reason `error`), which is how codex ends a session whose sideband fails. A failed creation is one `thread/realtime/error` with the failure text |
 * | `webrtc`, `websocket` | API key | not observed on codex: `thread/realtime/error` saying Gatehouse does not support it |
 * | `existingCall` | any | not observed on codex (it joins the call's sideband): `thread/realtime/error` saying Gatehouse does not support it |
 *
 * The call's session configuration is reduced to type, model, instructions (the prompt) and
 * output modality: codex adds its startup context, voice, tools and audio formats. The version
 * defaults to `v1` (codex's `RealtimeWsVersion` default in source; the 0.169.0 default was not
 * observed); `realtimeSessionId` defaults to the thread id, as in codex.
 */
import type { Static } from 'typebox';
import type { ThreadRealtimeStartParams } from '../../src/protocol/methods/realtime.js';
import type { ServerNotificationMethod } from '../../src/protocol/methods/index.js';
import type { AuthSource } from '../../src/upstream/auth-source.js';
import type { RealtimeCallAnswer } from '../../src/upstream/realtime-call.js';
import type { RealtimeCallBody } from '../upstream/upstream.actor.js';

/** codex's DEFAULT_REALTIME_MODEL. */
export const DEFAULT_REALTIME_MODEL = 'gpt-realtime-1.5';
export const REQUIRES_API_KEY = 'realtime conversation requires API key auth';
export const NO_API_KEY_REALTIME =
  'realtime conversations under API-key auth are not supported by Gatehouse: log in with ChatGPT and use the webrtc transport';
export const NO_SIDEBAND =
  'the realtime sideband WebSocket is not supported by Gatehouse: no realtime events will be relayed for this call';

export type RealtimeStartParams = Omit<Static<typeof ThreadRealtimeStartParams>, 'threadId'>;

export interface RealtimeStartBody {
  connectionId: string;
  params: RealtimeStartParams;
}

export interface RealtimeIO {
  threadId: string;
  auth: AuthSource;
  userAgent: string;
  originator: string;
  /** The thread's subscribers now, for the scoped request. */
  connectionIds(): string[];
  notify(method: ServerNotificationMethod, params: unknown): void;
  /** Asks the upstream actor to create the call. */
  createCall(body: RealtimeCallBody): Promise<RealtimeCallAnswer>;
}

export async function runRealtimeStart(params: RealtimeStartParams, io: RealtimeIO): Promise<void> {
  const { threadId } = io;
  const fail = (message: string) => io.notify('thread/realtime/error', { threadId, message });
  const transport = params.transport ?? { type: 'websocket' as const };
  let mode: string | undefined;
  try {
    mode = (await io.auth.current())?.mode;
  } catch (e) {
    fail((e as Error).message);
    return;
  }
  if (transport.type === 'websocket' && mode !== 'apikey') return fail(REQUIRES_API_KEY);
  if (mode === 'apikey') return fail(NO_API_KEY_REALTIME);
  if (transport.type !== 'webrtc') {
    return fail(`joining an existing realtime call is not supported by Gatehouse: ${NO_SIDEBAND}`);
  }

  const version = params.version ?? 'v1';
  const realtimeSessionId = params.realtimeSessionId ?? threadId;
  const headers: Record<string, string> = {
    'user-agent': io.userAgent,
    originator: io.originator,
    ...(version === 'v1' ? { 'openai-alpha': 'quicksilver=v1' } : {}),
    'x-session-id': realtimeSessionId,
  };
  let answer: RealtimeCallAnswer;
  try {
    answer = await io.createCall({
      threadId,
      connectionIds: io.connectionIds(),
      request: {
        sdp: transport.sdp,
        session: {
          type: 'realtime',
          model: params.model ?? DEFAULT_REALTIME_MODEL,
          instructions: params.prompt ?? '',
          output_modalities: [params.outputModality],
        },
        headers,
      },
    });
  } catch (e) {
    answer = { ok: false, message: (e as Error).message };
  }
  if (!answer.ok) return fail(answer.message);
  io.notify('thread/realtime/started', { threadId, realtimeSessionId, version });
  io.notify('thread/realtime/sdp', { threadId, sdp: answer.sdp });
  fail(`${NO_SIDEBAND} (call ${answer.callId})`);
  io.notify('thread/realtime/closed', { threadId, reason: 'error' });
}

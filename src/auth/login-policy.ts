/**
 * The login rules a host can impose through config (`forced_login_method`,
 * `forced_chatgpt_workspace_id`) and the rule that host-owned tokens exclude the other login
 * kinds. Every message is codex's, word for word (spec C.2, C.8).
 */
import type { CodexKeys } from '../config/config.js';

export const EXTERNAL_AUTH_ACTIVE_MESSAGE =
  'External auth is active. Use account/login/start (chatgptAuthTokens) to update it or account/logout to clear it.';

export type LoginKind =
  | 'apiKey'
  | 'chatgpt'
  | 'chatgptDeviceCode'
  | 'chatgptAuthTokens'
  | 'amazonBedrock'
  | 'amazonBedrockAccessKeys';

/** The refusal for a login kind under `forced_login_method`, if any. */
export function forcedMethodRefusal(
  kind: LoginKind,
  forced: CodexKeys['forcedLoginMethod'],
): string | undefined {
  if (forced === 'api') {
    if (kind === 'chatgpt' || kind === 'chatgptDeviceCode')
      return 'ChatGPT login is disabled. Use API key login instead.';
    if (kind === 'chatgptAuthTokens') return 'External ChatGPT auth is disabled. Use API key login instead.';
  }
  if (forced === 'chatgpt' && kind === 'apiKey')
    return 'API key login is disabled. Use ChatGPT login instead.';
  if (forced === 'chatgpt' && (kind === 'amazonBedrock' || kind === 'amazonBedrockAccessKeys'))
    return 'Amazon Bedrock login is disabled. Use ChatGPT login instead.';
  return undefined;
}

/** The refusal of a login with host-owned tokens for a workspace outside the allowed ones. */
export function workspaceLoginRefusal(accountId: string, allowed: string[] | null): string | undefined {
  if (!allowed || allowed.includes(accountId)) return undefined;
  return `External auth must use one of workspace(s) ${rustDebugList(allowed)}, but received ${JSON.stringify(accountId)}.`;
}

/** The failure of a token refresh that returned credentials for a workspace outside the allowed ones. */
export function workspaceRefreshRefusal(accountId: string, allowed: string[] | null): string | undefined {
  if (!allowed || allowed.includes(accountId)) return undefined;
  return `Login is restricted to workspace(s) ${allowed.join(', ')}, but current credentials belong to ${accountId}`;
}

/** Rust's `{:?}` of a list of strings: `["ws-a", "ws-b"]`. */
function rustDebugList(items: string[]): string {
  return `[${items.map((i) => JSON.stringify(i)).join(', ')}]`;
}

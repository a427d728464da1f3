/**
 * Scriptable faults of the local backend. A rule names a route (see `BACKEND_ROUTES`, or `*` for
 * every route) and what goes wrong there; each matching request uses the rule up by one, `times`
 * times (default once; `Infinity`, or -1 in JSON, for always). Rules are tried in the order they
 * were added. A fault replaces the normal handling of the request it is taken by, before the
 * bearer is looked at: a scripted 503 is a 503 whatever the credentials.
 *
 * Actions:
 * - `{kind:'status', status, body?, retryAfterSec?}`: answer with that status (200..599) and
 *   body (default `{"detail":"<reason phrase>"}`), and a `retry-after` header when given. On a
 *   WebSocket handshake (`responses.ws`, `remote.ws`) the upgrade is refused with it; on a
 *   `responses.ws.create` message an `{"type":"error","status":…}` frame is sent and the socket
 *   stays open; a `remote.ws.envelope` is lost (neither delivered nor acked, the socket stays open).
 * - `{kind:'slow', delayMs}`: wait that long, then handle the request normally (on
 *   `remote.ws.envelope`, the envelopes after the slow one wait their turn).
 * - `{kind:'disconnect', afterEvents?}`: cut the connection after that many streamed events
 *   (default 0: before any response). Routes that do not stream are cut before the response. A
 *   `responses.ws` rule counts the events of the whole socket, a `responses.ws.create` rule the
 *   events of that one response. A `remote.ws` rule counts the envelopes the app-server sends on
 *   that socket: the last one is handled but not acked, so the app-server must send it again
 *   after reconnecting. A `remote.ws.envelope` rule cuts the socket as the envelope arrives,
 *   before it is handled (`afterEvents` does not matter there).
 */
import { ROUTE_NAMES, type RouteName } from './routes.js';

export const ANY_ROUTE = '*';
export type FaultRoute = RouteName | typeof ANY_ROUTE;
export const FAULT_ROUTES: readonly FaultRoute[] = [...ROUTE_NAMES, ANY_ROUTE];

export const MAX_FAULT_DELAY_MS = 600_000;

export type FaultAction =
  | { kind: 'status'; status: number; body?: string; retryAfterSec?: number }
  | { kind: 'slow'; delayMs: number }
  | { kind: 'disconnect'; afterEvents?: number };

export interface FaultRule {
  route: FaultRoute;
  action: FaultAction;
  /** Matching requests this rule affects; default 1; Infinity (or -1) for always. */
  times?: number;
}

/** A rule as the control API shows it: `times` is what is left, -1 for always. */
export interface FaultRuleJson {
  route: FaultRoute;
  action: FaultAction;
  times: number;
}

export class FaultRuleError extends Error {
  override name = 'FaultRuleError';
}

/** Checks a rule (typically parsed from JSON) strictly; the message says what is wrong. */
export function parseFaultRule(value: unknown): Required<FaultRule> {
  const rule = object(value, 'a fault rule');
  onlyKeys(rule, ['route', 'action', 'times'], 'fault rule');
  if (typeof rule.route !== 'string' || !(FAULT_ROUTES as readonly string[]).includes(rule.route)) {
    throw new FaultRuleError(
      `route must be one of ${FAULT_ROUTES.map((r) => JSON.stringify(r)).join(', ')}; got ${show(rule.route)}`,
    );
  }
  const times = rule.times === undefined ? 1 : rule.times;
  if (times !== -1 && times !== Infinity && !(Number.isInteger(times) && (times as number) >= 1)) {
    throw new FaultRuleError(
      `times must be a positive integer, or -1 (Infinity) for always; got ${show(times)}`,
    );
  }
  return {
    route: rule.route as FaultRoute,
    action: parseAction(rule.action),
    times: times === -1 ? Infinity : (times as number),
  };
}

function parseAction(value: unknown): FaultAction {
  const action = object(value, 'action');
  switch (action.kind) {
    case 'status': {
      onlyKeys(action, ['kind', 'status', 'body', 'retryAfterSec'], 'status action');
      if (!integerIn(action.status, 200, 599)) {
        throw new FaultRuleError(
          `action.status must be an HTTP status from 200 to 599; got ${show(action.status)}`,
        );
      }
      if (action.body !== undefined && typeof action.body !== 'string') {
        throw new FaultRuleError(`action.body must be a string; got ${show(action.body)}`);
      }
      if (action.retryAfterSec !== undefined && !integerIn(action.retryAfterSec, 0, 86_400)) {
        throw new FaultRuleError(
          `action.retryAfterSec must be an integer from 0 to 86400; got ${show(action.retryAfterSec)}`,
        );
      }
      return {
        kind: 'status',
        status: action.status as number,
        ...(action.body !== undefined ? { body: action.body } : {}),
        ...(action.retryAfterSec !== undefined ? { retryAfterSec: action.retryAfterSec as number } : {}),
      };
    }
    case 'slow':
      onlyKeys(action, ['kind', 'delayMs'], 'slow action');
      if (!integerIn(action.delayMs, 0, MAX_FAULT_DELAY_MS)) {
        throw new FaultRuleError(
          `action.delayMs must be an integer from 0 to ${MAX_FAULT_DELAY_MS}; got ${show(action.delayMs)}`,
        );
      }
      return { kind: 'slow', delayMs: action.delayMs as number };
    case 'disconnect':
      onlyKeys(action, ['kind', 'afterEvents'], 'disconnect action');
      if (action.afterEvents !== undefined && !integerIn(action.afterEvents, 0, Number.MAX_SAFE_INTEGER)) {
        throw new FaultRuleError(
          `action.afterEvents must be a non-negative integer; got ${show(action.afterEvents)}`,
        );
      }
      return { kind: 'disconnect', afterEvents: (action.afterEvents as number | undefined) ?? 0 };
    default:
      throw new FaultRuleError(
        `action.kind must be "status", "slow" or "disconnect"; got ${show(action.kind)}`,
      );
  }
}

/** The rules in force, each used up by the requests it matches. */
export class Faults {
  private rules: { rule: Required<FaultRule>; left: number }[] = [];

  /** Adds a rule after checking it (throws FaultRuleError); returns the rule as stored. */
  add(rule: FaultRule): FaultRuleJson {
    const checked = parseFaultRule(rule);
    this.rules.push({ rule: checked, left: checked.times });
    return toJson(checked, checked.times);
  }

  clear(): void {
    this.rules = [];
  }

  /** The rules still in force, with the uses they have left. */
  list(): FaultRuleJson[] {
    return this.rules.map((r) => toJson(r.rule, r.left));
  }

  /** The action of the first rule matching this route, used up by one; undefined when none. */
  take(route: RouteName): FaultAction | undefined {
    const index = this.rules.findIndex((r) => r.rule.route === route || r.rule.route === ANY_ROUTE);
    if (index < 0) return undefined;
    const entry = this.rules[index]!;
    entry.left -= 1;
    if (entry.left <= 0) this.rules.splice(index, 1);
    return entry.rule.action;
  }
}

function toJson(rule: Required<FaultRule>, left: number): FaultRuleJson {
  return { route: rule.route, action: rule.action, times: left === Infinity ? -1 : left };
}

function object(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new FaultRuleError(`${what} must be a JSON object; got ${show(value)}`);
  }
  return value as Record<string, unknown>;
}

function onlyKeys(value: Record<string, unknown>, allowed: string[], what: string): void {
  const unknown = Object.keys(value).filter((k) => !allowed.includes(k));
  if (unknown.length > 0) {
    throw new FaultRuleError(
      `unknown field ${unknown.map((k) => JSON.stringify(k)).join(', ')} in ${what} (allowed: ${allowed.join(', ')})`,
    );
  }
}

function integerIn(value: unknown, min: number, max: number): boolean {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max;
}

function show(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value) ?? typeof value; // undefined for functions and symbols
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

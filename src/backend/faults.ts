/**
 * Scriptable faults of the local backend: a rule names a route and what goes wrong there, and
 * is used up after `times` matching requests (default once; -1 or Infinity for always).
 */
export const ROUTES = [
  'accounts.check',
  'config.bundle',
  'responses.http',
  'responses.ws',
  'realtime.calls',
  'oauth.token',
  '*',
] as const;
export type Route = (typeof ROUTES)[number];

export type FaultAction =
  | { kind: 'status'; status: number; body?: string; retryAfterSec?: number }
  | { kind: 'slow'; delayMs: number }
  /** Cuts the stream after `afterEvents` events (0: before answering at all). */
  | { kind: 'disconnect'; afterEvents?: number };

export interface FaultRule {
  route: Route;
  action: FaultAction;
  times?: number;
}

export class FaultError extends Error {
  override name = 'FaultError';
}

/** Checks a rule given as JSON (the control API) with messages that say what is wrong. */
export function parseFaultRule(value: unknown): FaultRule {
  const rule = value as Partial<FaultRule> | null;
  if (typeof rule !== 'object' || rule === null) throw new FaultError('a fault rule is a JSON object');
  if (!ROUTES.includes(rule.route as Route)) {
    throw new FaultError(`route must be one of ${ROUTES.join(', ')}`);
  }
  const action = rule.action as Partial<FaultAction> | undefined;
  switch (action?.kind) {
    case 'status':
      if (!Number.isInteger(action.status) || action.status! < 100 || action.status! > 599) {
        throw new FaultError('action.status must be an HTTP status from 100 to 599');
      }
      break;
    case 'slow':
      if (!Number.isInteger(action.delayMs) || action.delayMs! < 0 || action.delayMs! > 600_000) {
        throw new FaultError('action.delayMs must be an integer from 0 to 600000');
      }
      break;
    case 'disconnect':
      if (
        action.afterEvents !== undefined &&
        (!Number.isInteger(action.afterEvents) || action.afterEvents < 0)
      ) {
        throw new FaultError('action.afterEvents must be a non-negative integer');
      }
      break;
    default:
      throw new FaultError('action.kind must be status, slow or disconnect');
  }
  const times = rule.times ?? 1;
  if (times !== -1 && times !== Infinity && (!Number.isInteger(times) || times < 1)) {
    throw new FaultError('times must be a positive integer, or -1 for always');
  }
  return { route: rule.route!, action: action as FaultAction, times: times === -1 ? Infinity : times };
}

export class Faults {
  private rules: { rule: FaultRule; left: number }[] = [];

  add(rule: FaultRule): void {
    const checked = parseFaultRule(rule);
    this.rules.push({ rule: checked, left: checked.times ?? 1 });
  }

  clear(): void {
    this.rules = [];
  }

  /** The first rule for this route, used up by one. */
  take(route: Route): FaultAction | undefined {
    const index = this.rules.findIndex((r) => r.rule.route === route || r.rule.route === '*');
    if (index < 0) return undefined;
    const entry = this.rules[index]!;
    if (--entry.left <= 0) this.rules.splice(index, 1);
    return entry.rule.action;
  }
}

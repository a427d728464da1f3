/** The account methods' handlers; the broker runs them on the account scope's queue. */
import type { HandlerTable } from '../broker/handlers.js';
import type { ScopedHandler } from '../../actors/scope/scope-queue.actor.js';
import { ANNOUNCE_STORED_LOGIN, BROWSER_LOGIN_FINISHED, type AccountService } from './account-service.js';

export type AccountMethod =
  'account/login/start' | 'account/login/cancel' | 'account/read' | 'account/logout' | 'getAuthStatus';

export function accountHandlers(account: AccountService): Pick<HandlerTable, AccountMethod> {
  return {
    'account/login/start': (params, ctx) => account.loginStart(params, ctx) as never,
    'account/login/cancel': (params, ctx) => account.loginCancel(params, ctx),
    'account/read': (params) => account.read(params),
    'account/logout': (_params, ctx) => account.logout(ctx),
    getAuthStatus: (params) => account.authStatus(params),
  };
}

/** Work the account service puts on its own queue. */
export function accountInternalHandlers(account: AccountService): Record<string, ScopedHandler> {
  return {
    [BROWSER_LOGIN_FINISHED]: (body) =>
      account.browserLoginFinished(body as Parameters<AccountService['browserLoginFinished']>[0]),
    [ANNOUNCE_STORED_LOGIN]: (body) => account.announceStored(body as { connectionId: string }),
  };
}

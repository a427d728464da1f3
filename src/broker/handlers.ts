/**
 * Handlers for every client request except `initialize`, which the connection machine owns.
 * The table is checked against the registry: a method without a handler, or a handler without a
 * method, does not compile. Each area contributes its part, built from the broker's services.
 */
import type { ClientMethod } from '../protocol/methods/index.js';
import { ClientRequests } from '../protocol/methods/index.js';
import type { ParamsOf, ResultOf } from '../protocol/registry.js';
import type { Session } from '../../actors/connection/connection.machine.js';
import { accountHandlers } from '../account/handlers.js';
import type { AccountService } from '../account/account-service.js';
import type { Relay } from '../relay/handlers.js';
import type { DeviceKeyService } from '../device-key/device-key-service.js';
import type { RemoteControlService } from '../remote-control/remote-control-service.js';

export type CallMethod = Exclude<ClientMethod, 'initialize'>;

export interface HandlerContext {
  connectionId: string;
  session: Session;
  /** Runs `work` once the reply has been handed to the connection (follow-up notifications). */
  after(work: () => Promise<void> | void): void;
}

export type RequestHandler<M extends CallMethod> = (
  params: ParamsOf<(typeof ClientRequests)[M]>,
  ctx: HandlerContext,
) => ResultOf<(typeof ClientRequests)[M]> | Promise<ResultOf<(typeof ClientRequests)[M]>>;

export type HandlerTable = { [M in CallMethod]: RequestHandler<M> };

export const mockHandlers = {
  'mock/experimentalMethod': (params) => ({ echoed: params?.value ?? null }),
} satisfies Pick<HandlerTable, 'mock/experimentalMethod'>;

export function createHandlers(
  account: AccountService,
  relay: Relay,
  deviceKeys: DeviceKeyService,
  remoteControl: RemoteControlService,
): HandlerTable {
  return {
    ...mockHandlers,
    ...accountHandlers(account),
    ...relay.handlers(),
    ...deviceKeys.handlers(),
    ...remoteControl.handlers(),
  } satisfies HandlerTable;
}

/**
 * Handlers for every client request except `initialize`, which the connection machine owns.
 * The table is checked against the registry: a method without a handler, or a handler without a
 * method, does not compile.
 */
import type { ClientMethod } from '../protocol/methods/index.js';
import { ClientRequests } from '../protocol/methods/index.js';
import type { ParamsOf, ResultOf } from '../protocol/registry.js';
import type { Session } from '../../actors/connection/connection.machine.js';

export type CallMethod = Exclude<ClientMethod, 'initialize'>;

export interface HandlerContext {
  connectionId: string;
  session: Session;
}

export type RequestHandler<M extends CallMethod> = (
  params: ParamsOf<(typeof ClientRequests)[M]>,
  ctx: HandlerContext,
) => ResultOf<(typeof ClientRequests)[M]> | Promise<ResultOf<(typeof ClientRequests)[M]>>;

export type HandlerTable = { [M in CallMethod]: RequestHandler<M> };

export const handlers = {
  'mock/experimentalMethod': (params) => ({ echoed: params?.value ?? null }),
} satisfies HandlerTable;

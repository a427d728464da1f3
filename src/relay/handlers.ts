/** Handlers of the Responses relay (thread/start, turn/start, turn/interrupt). */
import type { BrokerServices } from '../broker/services.js';
import type { HandlerTable } from '../broker/handlers.js';
import type { threadRequests } from '../protocol/methods/thread.js';

export function relayHandlers(services: BrokerServices): Pick<HandlerTable, keyof typeof threadRequests> {
  void services;
  return {};
}

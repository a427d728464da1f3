/**
 * The wire actor: the only writer of one connection's outbound messages. Replies, notifications
 * and server requests all pass through its mailbox, so they reach the client in the order they
 * were produced (an `initialize` response always precedes what follows it).
 */
import type { Behaviour, Message } from '../../src/runtime/actor.js';
import { REPLY, type ReplyMessage } from '../../src/runtime/envelope.js';
import { fromErrorData, toWireError } from '../../src/protocol/errors.js';
import {
  encodeError,
  encodeNotification,
  encodeResponse,
  encodeServerRequest,
} from '../../src/protocol/jsonrpc.js';

export const WIRE_NOTIFY = 'wire.notify';
export const WIRE_REQUEST = 'wire.request';

export interface WireNotification {
  method: string;
  params: unknown;
  emittedAtMs: number;
}

export interface WireServerRequest {
  id: number;
  method: string;
  params: unknown;
}

export interface WireOutput {
  send: (text: string) => void;
  /** Called after each reply is written: the request it answers is finished. */
  replied: () => void;
}

export function wireBehaviour({ send, replied }: WireOutput): Behaviour {
  return {
    receive(message: Message) {
      switch (message.type) {
        case REPLY: {
          // A successful reply carries the result's JSON text (the connection actor serializes it).
          const { correlation: id, reply } = message.body as ReplyMessage;
          send(
            reply.ok
              ? encodeResponse(id, reply.value as string)
              : encodeError(id, toWireError(fromErrorData(reply.error))),
          );
          replied();
          return;
        }
        case WIRE_NOTIFY: {
          const n = message.body as WireNotification;
          send(encodeNotification(n.method, n.params, n.emittedAtMs));
          return;
        }
        case WIRE_REQUEST: {
          const r = message.body as WireServerRequest;
          send(encodeServerRequest(r.id, r.method, r.params));
          return;
        }
        default:
          throw new TypeError(`wire actor cannot handle ${message.type}`);
      }
    },
  };
}

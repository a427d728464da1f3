/** Gatehouse as a library: embed the broker in a host process. */
export { Broker, createBroker, type BrokerEvents, type BrokerOptions } from './broker/broker.js';
export { InProcessClient } from './transport/in-process-transport.js';
export { StdioTransport } from './transport/stdio-transport.js';
export { WebSocketTransport } from './transport/websocket-transport.js';
export { listenWebSocket, type WebSocketListener } from './transport/websocket-listener.js';
export type { Transport, TransportSink } from './transport/transport.js';
export {
  loadConfig,
  ConfigError,
  DEFAULT_SETTINGS,
  type Config,
  type GatehouseSettings,
} from './config/config.js';
export {
  ErrorCode,
  OVERLOADED_MESSAGE,
  ProtocolError,
  BrokerError,
  isProtocolError,
  isBrokerError,
} from './protocol/errors.js';
export {
  ClientRequests,
  ServerRequests,
  ServerNotifications,
  ClientNotifications,
} from './protocol/methods/index.js';
export type { LifecycleState, Session } from '../actors/connection/connection.machine.js';
export { createLogger, type Logger } from './util/logger.js';
export {
  startLocalBackend,
  LocalBackendError,
  type LocalBackend,
  type LocalBackendOptions,
  type RecordedRequest,
  type ChatgptUser,
} from './backend/local-backend.js';
export { chatgptClaims, mintJwt, type ChatgptIdentity } from './backend/tokens.js';

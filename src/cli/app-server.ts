/** `gatehouse app-server`: load configuration, start the broker, attach stdio or a WebSocket listener. */
import { createBroker } from '../broker/broker.js';
import { loadConfig } from '../config/config.js';
import { StdioTransport } from '../transport/stdio-transport.js';
import type { WebSocketListener } from '../transport/websocket-listener.js';
import { createLogger } from '../util/logger.js';

export async function runAppServer(options: { overrides: string[]; listen: string }): Promise<number> {
  const log = createLogger();
  const config = loadConfig({ overrides: options.overrides });
  for (const key of config.ignoredKeys)
    log.debug({ key }, 'config key accepted and ignored: not used by Gatehouse');
  const broker = createBroker({
    codexHome: config.codexHome,
    settings: config.settings,
    codex: config.codex,
    log,
  });

  let listener: WebSocketListener | undefined;
  let stdio: StdioTransport | undefined;
  if (options.listen === 'stdio://' || options.listen === 'stdio') {
    stdio = new StdioTransport(config.settings.maxLineBytes, log);
    broker.connect(stdio);
  } else {
    const { listenWebSocket } = await import('../transport/websocket-listener.js');
    listener = await listenWebSocket(broker, options.listen);
    log.info({ url: listener.url }, `listening on ${listener.url}`);
  }

  const done = new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
    void stdio?.ended.then(() => resolve('stdin closed'));
  });
  const reason = await done;
  log.info({ reason, inFlight: broker.inFlight }, 'shutting down');
  // The listener stops accepting at once, but its close settles only when every socket is gone,
  // and the broker is what closes them: start both, then wait for both.
  const listenerClosed = listener?.close();
  await broker.close(config.settings.shutdownTimeoutMs);
  await listenerClosed;
  return 0;
}

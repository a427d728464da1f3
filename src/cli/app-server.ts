/** `gatehouse app-server`: load configuration, start the broker, attach stdio or a WebSocket listener. */
import { createBroker } from '../broker/broker.js';
import { diagnosticsLine } from '../broker/diagnostics.js';
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
  // SIGUSR2 asks for one diagnostics line on stderr (never stdout: that is the protocol).
  let diagnosticsAsked = 0;
  process.on('SIGUSR2', () => {
    const seq = ++diagnosticsAsked;
    broker.diagnostics().then(
      (d) => process.stderr.write(diagnosticsLine(d, seq)),
      (e: unknown) => log.error({ err: (e as Error).message }, 'diagnostics failed'),
    );
  });

  let listener: WebSocketListener | undefined;
  let stdio: StdioTransport | undefined;
  if (options.listen === 'stdio://' || options.listen === 'stdio') {
    stdio = new StdioTransport(
      config.settings.maxLineBytes,
      log,
      process.stdin,
      process.stdout,
      config.settings.maxPendingOutputBytes,
    );
    broker.connect(stdio);
  } else {
    const { listenWebSocket } = await import('../transport/websocket-listener.js');
    listener = await listenWebSocket(broker, options.listen);
    log.info({ url: listener.url }, `listening on ${listener.url}`);
  }

  // `once`: a second signal during the drain ends the process at once, as an impatient host means.
  const done = new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGHUP', () => resolve('SIGHUP'));
    void stdio?.ended.then(() => resolve('stdin closed'));
  });
  const reason = await done;
  log.info({ reason, inFlight: broker.inFlight }, 'shutting down');
  // The listener stops accepting at once, but its close settles only when every socket is gone,
  // and the broker is what closes them: start both, then wait for both.
  const listenerClosed = listener?.close();
  await broker.close(config.settings.shutdownTimeoutMs);
  await listenerClosed;
  log.info('shut down');
  // Every request is answered and the output flushed; what may still hold the event loop is work
  // whose request was already answered with the shutdown error (a backend call in flight, say).
  // It has nobody left to report to, so it does not get to delay the exit.
  setTimeout(() => process.exit(), EXIT_GRACE_MS).unref();
  return 0;
}

/** How long the process may linger after the broker closed before it is ended (see above). */
const EXIT_GRACE_MS = 200;

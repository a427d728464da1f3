/**
 * The broker(s) simulated clients talk to, one kind per transport:
 *
 * - `stdio`: one `gatehouse app-server` child per client (its own CODEX_HOME), as a host that
 *   spawns codex has; every client logs its own broker in.
 * - `websocket`: one child with `--listen ws://127.0.0.1:0`; the first client logs it in.
 * - `in-process`: a broker embedded in this process (`createBroker`); the first client logs it in.
 * - `remote`: one child on stdio, logged in and with remote control enabled by the runner's own
 *   control connection; clients reach it through the local backend's relay
 *   (`/__gatehouse/remote-control/client`), as phones would.
 *
 * Every child is pointed at the local backend and trusts its certificate authority.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LocalBackend } from '../backend/local-backend.js';
import type { Broker } from '../broker/broker.js';
import { parseDiagnosticsLine, type BrokerDiagnostics } from '../broker/diagnostics.js';
import { InProcessLink, StdioChildLink, WebSocketLink, type ClientLink } from './client-link.js';
import type { TransportKind } from './results.js';
import { RpcClient } from './rpc-client.js';
import { ACCOUNT_ID, refreshResult } from './session.js';

export interface BrokerTarget {
  /** Who logs a broker in: each client its own, the first client, or the runner (remote). */
  login: 'each' | 'first' | 'runner';
  connect(index: number): Promise<ClientLink>;
  /** The broker runs in this process (which is then what gets sampled). */
  inProcess: boolean;
  /** Broker processes to sample. */
  pids(): number[];
  /** The broker's diagnostics (a single broker only: websocket, remote, in-process). */
  diagnostics?: (timeoutMs: number) => Promise<BrokerDiagnostics>;
  close(): Promise<void>;
}

export interface TargetOptions {
  backend: LocalBackend;
  /** A folder of this run, removed by the caller: CODEX_HOMEs go here. */
  workDir: string;
  /** `-c key=value` overrides for every broker. */
  config: string[];
  /** Node.js flags for every app-server child. */
  nodeArgs: string[];
  freshToken(): string;
  requestTimeoutMs: number;
}

const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));

export async function openTarget(kind: TransportKind, options: TargetOptions): Promise<BrokerTarget> {
  switch (kind) {
    case 'stdio':
      return stdioTarget(options);
    case 'websocket':
      return webSocketTarget(options);
    case 'in-process':
      return inProcessTarget(options);
    case 'remote':
      return remoteTarget(options);
  }
}

function overrides(options: TargetOptions): string[] {
  return [`chatgpt_base_url=${options.backend.chatgptBaseUrl}`, ...options.config];
}

function childArgs(options: TargetOptions, extra: string[] = []): string[] {
  return [...options.nodeArgs, CLI, 'app-server', ...overrides(options).flatMap((c) => ['-c', c]), ...extra];
}

function childEnv(options: TargetOptions, home: string, log = 'warn'): NodeJS.ProcessEnv {
  mkdirSync(home, { recursive: true, mode: 0o700 });
  return {
    ...process.env,
    CODEX_HOME: home,
    CODEX_CA_CERTIFICATE: options.backend.caCertPath,
    GATEHOUSE_LOG: log,
  };
}

function stdioTarget(options: TargetOptions): BrokerTarget {
  const children = new Set<StdioChildLink>();
  let spawned = 0;
  return {
    login: 'each',
    connect: (index) => {
      // A reconnecting client (the disconnect fault) starts a fresh broker in a fresh home.
      const home = join(options.workDir, `client-${index}-${++spawned}`);
      const link = new StdioChildLink(childArgs(options), childEnv(options, home));
      children.add(link);
      void link.exited.then(() => children.delete(link));
      return Promise.resolve(link);
    },
    inProcess: false,
    pids: () => [...children].map((c) => c.pid),
    close: async () => {
      await Promise.all([...children].map((c) => c.stop()));
    },
  };
}

async function webSocketTarget(options: TargetOptions): Promise<BrokerTarget> {
  const server = new StdioChildLink(
    childArgs(options, ['--listen', 'ws://127.0.0.1:0']),
    childEnv(options, join(options.workDir, 'broker'), 'info'),
  );
  const url = await server.stderrMatch(/"msg":"listening on (ws:\/\/[^"]+)"/, 15_000);
  return {
    login: 'first',
    connect: () => WebSocketLink.open(url),
    inProcess: false,
    pids: () => [server.pid],
    diagnostics: diagnosticsBySignal(server),
    close: () => server.stop('SIGTERM'),
  };
}

/**
 * Asks an app-server child for diagnostics: SIGUSR2, then its next diagnostics line on stderr.
 * Signals can merge, so a call waits for a line numbered above the last one seen before it
 * signalled rather than counting lines; calls are serialized for the same reason.
 */
function diagnosticsBySignal(server: StdioChildLink): (timeoutMs: number) => Promise<BrokerDiagnostics> {
  let latest: { seq: number; diagnostics: BrokerDiagnostics } | undefined;
  let wake: (() => void) | undefined;
  server.onStderrLine = (line) => {
    const parsed = parseDiagnosticsLine(line);
    if (!parsed) return;
    latest = parsed;
    wake?.();
  };
  let queue: Promise<unknown> = Promise.resolve();
  const take = async (timeoutMs: number): Promise<BrokerDiagnostics> => {
    const after = latest?.seq ?? 0;
    process.kill(server.pid, 'SIGUSR2');
    const deadline = Date.now() + timeoutMs;
    while (!latest || latest.seq <= after) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`the broker printed no diagnostics within ${timeoutMs} ms of SIGUSR2`);
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        wake = resolve;
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
      wake = undefined;
    }
    return latest.diagnostics;
  };
  return (timeoutMs) => {
    const next = queue.then(() => take(timeoutMs));
    queue = next.catch(() => undefined);
    return next;
  };
}

async function inProcessTarget(options: TargetOptions): Promise<BrokerTarget> {
  const { createBroker } = await import('../broker/broker.js');
  const { loadConfig } = await import('../config/config.js');
  const { createLogger } = await import('../util/logger.js');
  const home = join(options.workDir, 'broker');
  const env = childEnv(options, home);
  const config = loadConfig({ env, overrides: overrides(options) });
  const broker: Broker = createBroker({
    codexHome: home,
    settings: config.settings,
    codex: config.codex,
    env,
    log: createLogger('warn'),
  });
  return {
    login: 'first',
    connect: () => Promise.resolve(new InProcessLink(broker)),
    inProcess: true,
    pids: () => [],
    diagnostics: () => broker.diagnostics(),
    close: () => broker.close(5_000),
  };
}

async function remoteTarget(options: TargetOptions): Promise<BrokerTarget> {
  const server = new StdioChildLink(childArgs(options), childEnv(options, join(options.workDir, 'broker')));
  // The runner's own connection owns the login, so it answers the broker's refresh requests.
  const control = new RpcClient(
    server,
    (m) => {
      if (m.method === 'account/chatgptAuthTokens/refresh') {
        control.answer(m.id, refreshResult(options.freshToken()));
      }
    },
    options.requestTimeoutMs,
  );
  const connected = control.waitFor(
    (m) =>
      m.method === 'remoteControl/status/changed' && (m.params as { status?: string }).status === 'connected',
    'remote control connected',
  );
  connected.catch(() => undefined);
  const steps: [string, unknown][] = [
    [
      'initialize',
      {
        clientInfo: { name: 'gatehouse_loadtest', version: '0.1.0' },
        capabilities: { experimentalApi: true },
      },
    ],
    [
      'account/login/start',
      { type: 'chatgptAuthTokens', accessToken: options.freshToken(), chatgptAccountId: ACCOUNT_ID },
    ],
    ['remoteControl/enable', {}],
  ];
  for (const [method, params] of steps) {
    const outcome = await control.request(method, params);
    if (!outcome.ok) {
      server.close();
      throw new Error(`remote control set-up: ${method} failed: ${outcome.error.message}`);
    }
  }
  await connected;
  const base = options.backend.url.replace(/^https:/, 'wss:');
  const ca = readFileSync(options.backend.caCertPath);
  let opened = 0;
  return {
    login: 'runner',
    // Ids are unique per connection: a reconnecting client must not collide with its old stream.
    connect: (index) =>
      WebSocketLink.open(
        `${base}/__gatehouse/remote-control/client?client_id=loadtest-${index}&stream_id=stream-${++opened}`,
        ca,
      ),
    inProcess: false,
    pids: () => [server.pid],
    diagnostics: diagnosticsBySignal(server),
    close: () => server.stop(),
  };
}

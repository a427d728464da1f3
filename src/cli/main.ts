#!/usr/bin/env node
/**
 * `gatehouse` command line. Stdout carries the protocol (app-server) or the command's own output
 * (demo, help); everything else goes to stderr.
 */
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';

// Commands are imported when chosen: a host spawning `app-server` should not pay for the rest.

const USAGE = `Usage: gatehouse <command> [options]

Commands:
  app-server [-c key=value]... [--listen URL]   Serve the codex app-server protocol (stdio by default)
  app-server generate-json-schema --out DIR [--experimental]
                                                 Write the protocol's JSON Schemas
  app-server generate-ts --out DIR [--experimental]
                                                 Write TypeScript bindings of the protocol
  demo                                           Offline demo: start app-server and talk to it
  loadtest [-n CLIENTS] [-d TIME] [-t TRANSPORT] ...
                                                 Simulated clients against app-server and the local
                                                 backend: a results table, JSON and HTML reports
  local-backend [--port N] [--host IP] [--state-dir DIR] [--response-delay-ms N]
                [--remote-control-token-ttl SEC]
                                                 Serve the ChatGPT backend endpoints on loopback (HTTPS)
  help                                           Show this help

Run 'gatehouse <command> --help' for a command's options.
Environment: CODEX_HOME (default ~/.codex), GATEHOUSE_LOG (trace|debug|info|warn|error|silent).
`;

const appServerUsage = (settings: string) => `Usage: gatehouse app-server [-c key=value]... [--listen URL]

Serves the codex app-server protocol: JSON-RPC over JSON lines on stdin/stdout, or one message
per WebSocket text frame with --listen ws://IP:PORT. Exits 0 when stdin closes; on SIGTERM,
SIGINT or SIGHUP it drains and exits 0: requests read from then on get -32600 "Server is draining;
retry after reconnecting", in-flight requests may finish for gatehouse.shutdown_timeout_ms, those
still running then get -32603 "Server shut down before the request finished" (both with
data.reason "serverShuttingDown"), and WebSocket clients are closed with 1001 after their answers.
Output a client leaves unread past gatehouse.max_pending_output_bytes pauses the reading of its
input; requests beyond gatehouse.max_requests_per_connection in flight on one connection get -32001.
On SIGUSR2 it writes one diagnostics line on stderr ({"msg":"broker diagnostics",...}: heap and RSS,
connections, actors, queued and pending work, event listeners, active handles by type), after a
full GC when started with node --expose-gc; \`gatehouse loadtest --soak\` reads these lines.

Options:
  -c, --config key=value   Override a config.toml value (TOML syntax; repeatable). Codex keys
                           Gatehouse does not use (model, approval_policy, ...) are accepted and ignored.
      --listen URL         stdio:// (default) or ws://IP:PORT (port 0 picks a free port)
  -h, --help               Show this help

Codex keys it reads (-c key=value or config.toml):
  chatgpt_base_url             ChatGPT backend (default https://chatgpt.com/backend-api)
  openai_base_url              API-key backend (default https://api.openai.com/v1)
  forced_login_method          "chatgpt" or "api": refuse the other kind of login
  forced_chatgpt_workspace_id  a workspace id, or a TOML list of them: refuse tokens for others
Environment: CODEX_HOME, CODEX_CA_CERTIFICATE (extra trusted CA, PEM), GATEHOUSE_LOG.

Gatehouse settings (-c gatehouse.<key>=value or a [gatehouse] table in config.toml):
${settings}

Subcommands:
  generate-json-schema --out DIR [--experimental]
  generate-ts --out DIR [--experimental]
`;

const LOCAL_BACKEND_USAGE = `Usage: gatehouse local-backend [--port N] [--host IP] [--state-dir DIR] [--response-delay-ms N]
                               [--remote-control-token-ttl SEC]

Serves the ChatGPT backend endpoints Gatehouse calls, on loopback over HTTPS and WebSocket, with a
throwaway certificate authority: accounts/check, config bundle, Responses (SSE and WebSocket,
answering "Echo: <last user text>"), realtime calls, remote control (enroll, refresh, the server
WebSocket, and remote clients relayed to it), an OAuth issuer (PKCE) that signs in dev@example.com
(account acct-1, plan plus), and a control API under /__gatehouse for scripted faults, recorded
requests, revocation and remote control. Bearers are checked for shape, expiry and revocation.

Once listening it prints one JSON line on stdout, then logs on stderr (GATEHOUSE_LOG):
  {"url":"https://127.0.0.1:PORT","chatgptBaseUrl":"https://127.0.0.1:PORT/backend-api",
   "issuer":"https://127.0.0.1:PORT","caCertificate":"/path/to/ca.pem"}
It stops and exits 0 on SIGTERM or SIGINT.

Options:
      --port N               TCP port; 0 picks a free one (default 0)
      --host IP              loopback address to listen on: 127.0.0.1 (default), ::1 or localhost;
                             anything else is refused
      --state-dir DIR        folder for ca.pem, the CA certificate (default: a fresh temporary
                             folder, removed on exit)
      --response-delay-ms N  pause between streamed Responses events, 0 to 60000 (default 0)
      --remote-control-token-ttl SEC
                             lifetime of the remote-control tokens enroll and refresh issue,
                             0 (already expired) to 31622400 (default 3600)
  -h, --help                 Show this help

Point Gatehouse at it:
  CODEX_CA_CERTIFICATE=<caCertificate> gatehouse app-server -c chatgpt_base_url=<chatgptBaseUrl>
and, for the browser login, -c gatehouse.login_issuer="<issuer>".
`;

const GENERATE_USAGE = `Usage: gatehouse app-server generate-json-schema|generate-ts --out DIR [--experimental]

Writes the protocol as Gatehouse implements it. Without --experimental, experimental methods
are left out.
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    case 'app-server':
      return appServer(rest);
    case 'demo':
      if (rest.includes('--help') || rest.includes('-h')) {
        process.stdout.write(
          'Usage: gatehouse demo\n\nStarts the local backend and `gatehouse app-server` pointed at it, then plays a host:\n' +
            'handshake, login with host-owned tokens, a turn, a revoked token answered by a refresh, a\n' +
            'second turn, logout. Prints the JSON lines exchanged as a timeline. Offline: loopback only.\n',
        );
        return 0;
      }
      return (await import('./demo.js')).runDemo();
    case 'local-backend':
      return localBackend(rest);
    case 'loadtest':
      return (await import('./loadtest.js')).runLoadtestCommand(rest);
    default:
      process.stderr.write(`gatehouse: unknown command '${command}'\n\n${USAGE}`);
      return 2;
  }
}

async function appServer(args: string[]): Promise<number> {
  const sub = args[0];
  if (sub === 'generate-json-schema' || sub === 'generate-ts') {
    const { values } = parseArgs({
      args: args.slice(1),
      options: {
        out: { type: 'string', short: 'o' },
        experimental: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h' },
      },
    });
    if (values.help) {
      process.stdout.write(GENERATE_USAGE);
      return 0;
    }
    if (!values.out) throw new UsageError(`${sub} needs --out DIR\n\n${GENERATE_USAGE}`);
    const { runGenerateJsonSchema, runGenerateTs } = await import('./generate.js');
    const written =
      sub === 'generate-json-schema'
        ? await runGenerateJsonSchema(values.out, values.experimental)
        : await runGenerateTs(values.out, values.experimental);
    process.stderr.write(`wrote ${written} files to ${values.out}\n`);
    return 0;
  }
  const { values } = parseArgs({
    args,
    options: {
      config: { type: 'string', short: 'c', multiple: true, default: [] },
      listen: { type: 'string', default: 'stdio://' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    const { settingsHelp } = await import('../config/config.js');
    process.stdout.write(appServerUsage(settingsHelp()));
    return 0;
  }
  const { runAppServer } = await loadModule<typeof import('./app-server.js')>('./app-server.js');
  return runAppServer({ overrides: values.config, listen: values.listen });
}

async function localBackend(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      port: { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      'state-dir': { type: 'string' },
      'response-delay-ms': { type: 'string' },
      'remote-control-token-ttl': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(LOCAL_BACKEND_USAGE);
    return 0;
  }
  const {
    runLocalBackend,
    integerOption,
    assertLoopbackHost,
    DEFAULT_REMOTE_CONTROL_TOKEN_TTL_SEC,
    MAX_REMOTE_CONTROL_TOKEN_TTL_SEC,
  } = await import('./local-backend.js');
  let port: number;
  let responseDelayMs: number;
  let remoteControlTokenTtlSec: number;
  try {
    port = integerOption('--port', values.port, 0, 65_535);
    responseDelayMs = integerOption('--response-delay-ms', values['response-delay-ms'], 0, 60_000);
    remoteControlTokenTtlSec = integerOption(
      '--remote-control-token-ttl',
      values['remote-control-token-ttl'],
      DEFAULT_REMOTE_CONTROL_TOKEN_TTL_SEC,
      MAX_REMOTE_CONTROL_TOKEN_TTL_SEC,
    );
    assertLoopbackHost(values.host);
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${LOCAL_BACKEND_USAGE}`);
  }
  return runLocalBackend({
    port,
    host: values.host,
    responseDelayMs,
    remoteControlTokenTtlSec,
    ...(values['state-dir'] !== undefined ? { stateDir: values['state-dir'] } : {}),
  });
}

class UsageError extends Error {}

/**
 * Loads a command's module with `require()`, which Node (>= 20.19) allows for ES modules: it reads
 * the module graph synchronously, and for app-server's graph (about 500 files, TypeBox's alone
 * about 370) that is some 70 ms less than `import()`, a quarter of the time to the first
 * `initialize` answer. A graph with top-level await cannot be required; it is imported instead.
 */
async function loadModule<T>(specifier: string): Promise<T> {
  try {
    return createRequire(import.meta.url)(specifier) as T;
  } catch (e) {
    if ((e as { code?: string }).code !== 'ERR_REQUIRE_ASYNC_MODULE') throw e;
    return (await import(specifier)) as T;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    const message = e instanceof Error ? e.message : String(e);
    process.stderr.write(`gatehouse: ${message}\n`);
    process.exitCode =
      e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') ? 2 : 1;
  },
);

/**
 * Remote control against stdio, in one run: the same `account/read` sent to one
 * `gatehouse app-server` child over its stdio and by remote clients through the local backend's
 * relay (spec B.5: the backend wraps each message in a `client_message` envelope on the
 * WebSocket Gatehouse holds, Gatehouse answers with a `server_message`, the backend acks it and
 * hands the answer to the client).
 *
 *  1. Round trip, 1 in flight: over stdio, then from one remote client.
 *  2. Throughput, N in flight: N = clients x inFlightPerClient outstanding requests on the stdio
 *     connection, against the same number spread over `clients` remote clients.
 *
 * The backend and the remote clients live in this process (`backend.remoteControl.openClient()`),
 * so the remote figures include the backend's envelope handling and bookkeeping as well as the
 * second hop; the relay overhead is the difference. The broker is logged in with host-owned
 * tokens, so after the first call `account/read` is answered from memory on both paths.
 * Every answer is correlated by id and checked for the account's email.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLocalBackend, type LocalBackend, type RemoteClient } from '../src/backend/local-backend.js';
import {
  BENCH_IDENTITY,
  benchToken,
  FIRST_FREE_ID,
  SETUP_TIMEOUT_MS,
  setupCall,
  startGatehouse,
} from './gatehouse-child.js';
import type { LineChild } from './line-child.js';
import { median, percentile, sortedCopy } from './stats.js';
import { runClosedLoop, type Answer, type Connection } from './stdio-load.js';

export interface RemoteControlBenchOptions {
  /** Sequential requests per round and path (1 in flight). */
  rttRequests: number;
  /** Requests per round and path at `clients x inFlightPerClient` in flight. */
  requests: number;
  clients: number;
  inFlightPerClient: number;
  rounds: number;
  /** Node flags for the gatehouse child (`--cpu-prof ...` under BENCH_CPU_PROF). */
  nodeArgs: string[];
  progress: (message: string) => void;
}

export interface ReadLoad {
  requests: number;
  inFlight: number;
  elapsedMs: number;
  msgsPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

export type ReadSummary = ReadLoad & { rounds: ReadLoad[] };

export interface RemoteControlReport {
  parameters: Omit<RemoteControlBenchOptions, 'progress' | 'nodeArgs'>;
  local: { rtt: ReadSummary; pipelined: ReadSummary };
  remote: { rtt: ReadSummary; pipelined: ReadSummary };
  /** Remote figure / local figure. */
  ratios: {
    rttP50: number;
    rttP99: number;
    pipelinedMsgsPerSec: number;
    pipelinedP50: number;
    pipelinedP99: number;
  };
  overheadUs: {
    /** Remote RTT p50 - local RTT p50: what the relay adds to one request's round trip. */
    roundTripP50: number;
    /** 1/remote rate - 1/local rate at N in flight: the relay's cost per message under load. */
    perMessageUnderLoad: number;
  };
}

/** Request ids of the loads over stdio start here, past the set-up calls. */
const FIRST_LOAD_ID = 1000;

/** Count-bounded loads still get a deadline: a floor of 500 requests/s, at least 30 s. */
function loadTimeoutMs(requests: number): number {
  return Math.max(30_000, requests * 2);
}

export async function runRemoteControlBench(
  options: RemoteControlBenchOptions,
): Promise<RemoteControlReport> {
  const codexHome = mkdtempSync(join(tmpdir(), 'gatehouse-bench-rc-'));
  const backend = await startLocalBackend({ port: 0 });
  let child: LineChild | undefined;
  const clients: RemoteClient[] = [];
  try {
    options.progress('remote control: starting gatehouse, logging in, enabling remote control');
    child = await startEnabledGatehouse(backend, codexHome, options.nodeArgs);
    const server = await backend.remoteControl.waitForServer(() => true, SETUP_TIMEOUT_MS);
    for (let i = 0; i < options.clients; i++) {
      const remote = backend.remoteControl.openClient({ environmentId: server.environmentId });
      clients.push(remote);
      const init = await remote.request(
        'initialize',
        { clientInfo: { name: `bench-remote-${i}`, title: null, version: '1' } },
        SETUP_TIMEOUT_MS,
      );
      if (!init.result) throw child.failure(`remote initialize failed: ${JSON.stringify(init.error)}`);
    }

    const inFlight = options.clients * options.inFlightPerClient;
    const local: Connection = { child, nextId: FIRST_LOAD_ID };
    const first = clients[0]!;
    const warmRequests = Math.min(options.requests, 2000);
    const warmRtt = Math.min(options.rttRequests, 500);
    options.progress(`remote control warm-up: ${warmRequests} pipelined + ${warmRtt} sequential, each path`);
    await stdioReads(local, warmRequests, inFlight);
    await stdioReads(local, warmRtt, 1);
    await remoteReads(clients, warmRequests, options.inFlightPerClient);
    await remoteReads([first], warmRtt, 1);

    const rounds: { local: ReadLoad; remote: ReadLoad }[][] = [];
    for (let r = 1; r <= options.rounds; r++) {
      options.progress(
        `remote control round ${r}/${options.rounds}: ${options.rttRequests} at 1 in flight, then ` +
          `${options.requests} at ${inFlight} in flight (${options.clients} remote clients x ${options.inFlightPerClient})`,
      );
      rounds.push([
        {
          local: await stdioReads(local, options.rttRequests, 1),
          remote: await remoteReads([first], options.rttRequests, 1),
        },
        {
          local: await stdioReads(local, options.requests, inFlight),
          remote: await remoteReads(clients, options.requests, options.inFlightPerClient),
        },
      ]);
    }

    for (const remote of clients.splice(0)) remote.close();
    await child.close();

    const summary = (pick: (round: { local: ReadLoad; remote: ReadLoad }[]) => ReadLoad): ReadSummary => {
      const loads = rounds.map(pick);
      return {
        requests: loads[0]?.requests ?? 0,
        inFlight: loads[0]?.inFlight ?? 0,
        elapsedMs: median(loads.map((x) => x.elapsedMs)),
        msgsPerSec: median(loads.map((x) => x.msgsPerSec)),
        p50Ms: median(loads.map((x) => x.p50Ms)),
        p99Ms: median(loads.map((x) => x.p99Ms)),
        rounds: loads,
      };
    };
    const localSide = { rtt: summary((x) => x[0]!.local), pipelined: summary((x) => x[1]!.local) };
    const remoteSide = { rtt: summary((x) => x[0]!.remote), pipelined: summary((x) => x[1]!.remote) };
    const { progress: _progress, nodeArgs: _nodeArgs, ...parameters } = options;
    return {
      parameters,
      local: localSide,
      remote: remoteSide,
      ratios: {
        rttP50: remoteSide.rtt.p50Ms / localSide.rtt.p50Ms,
        rttP99: remoteSide.rtt.p99Ms / localSide.rtt.p99Ms,
        pipelinedMsgsPerSec: remoteSide.pipelined.msgsPerSec / localSide.pipelined.msgsPerSec,
        pipelinedP50: remoteSide.pipelined.p50Ms / localSide.pipelined.p50Ms,
        pipelinedP99: remoteSide.pipelined.p99Ms / localSide.pipelined.p99Ms,
      },
      overheadUs: {
        roundTripP50: (remoteSide.rtt.p50Ms - localSide.rtt.p50Ms) * 1000,
        perMessageUnderLoad: 1e6 / remoteSide.pipelined.msgsPerSec - 1e6 / localSide.pipelined.msgsPerSec,
      },
    };
  } finally {
    for (const remote of clients) remote.close();
    child?.kill();
    await backend.close();
    rmSync(codexHome, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Set-up over stdio: initialize (experimentalApi), host-owned tokens, remoteControl/enable.

async function startEnabledGatehouse(
  backend: LocalBackend,
  codexHome: string,
  nodeArgs: string[],
): Promise<LineChild> {
  const child = await startGatehouse(backend, {
    label: 'gatehouse (remote control)',
    codexHome,
    nodeArgs,
    accessToken: benchToken(3600),
  });
  try {
    // enable answers `connecting` once enrolled; the socket is up at the `connected` notification.
    await setupCall(
      child,
      FIRST_FREE_ID,
      'remoteControl/enable',
      {},
      (m) => m.method === 'remoteControl/status/changed' && m.params?.status === 'connected',
    );
    return child;
  } catch (e) {
    child.kill();
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// The local baseline: account/read over the child's stdio.

/**
 * `inFlight` requests outstanding on the stdio connection, through stdio-load.ts's closed loop
 * with this request and its check. Notifications are skipped; anything else that is not an
 * expected answer fails the run.
 */
async function stdioReads(connection: Connection, requests: number, inFlight: number): Promise<ReadLoad> {
  const { elapsedMs, latency } = await runClosedLoop(
    connection,
    {
      request: (id) => `{"id":${id},"method":"account/read","params":{}}`,
      check: readProblem,
      skipNotifications: true,
    },
    requests,
    inFlight,
    loadTimeoutMs(requests),
  );
  return loadOf(latency, inFlight, elapsedMs);
}

// ---------------------------------------------------------------------------------------------
// Remote: account/read from remote clients through the relay.

/**
 * `inFlightPerClient` request loops on each client, drawing from one budget of `requests`, so the
 * run ends when the last answer arrives, whichever client carried it.
 */
async function remoteReads(
  clients: RemoteClient[],
  requests: number,
  inFlightPerClient: number,
): Promise<ReadLoad> {
  const latency = new Float64Array(requests);
  const timeoutMs = loadTimeoutMs(requests);
  let next = 0;
  const loop = async (remote: RemoteClient): Promise<void> => {
    while (next < requests) {
      const i = next++;
      const start = performance.now();
      const answer = await remote.request('account/read', {}, timeoutMs);
      latency[i] = performance.now() - start;
      const problem = readProblem(answer);
      if (problem !== undefined)
        throw new Error(`remote ${remote.clientId}: answer ${answer.id}: ${problem}`);
    }
  };
  const t0 = performance.now();
  await Promise.all(
    clients.flatMap((remote) => Array.from({ length: inFlightPerClient }, () => loop(remote))),
  );
  const elapsedMs = performance.now() - t0;
  // The client keeps every message it received; the bench has checked them already.
  for (const remote of clients) remote.received.length = 0;
  return loadOf(latency, clients.length * inFlightPerClient, elapsedMs);
}

// ---------------------------------------------------------------------------------------------

/** Why `m` is not a good `account/read` answer for the bench identity, or undefined when it is. */
function readProblem(m: Pick<Answer, 'result' | 'error'>): string | undefined {
  if (m.error !== undefined) return `error ${JSON.stringify(m.error)}`;
  const account = (m.result as { account?: { email?: unknown } } | undefined)?.account;
  return account?.email === BENCH_IDENTITY.email
    ? undefined
    : `not the bench account: ${JSON.stringify(m.result)}`;
}

function loadOf(latency: Float64Array, inFlight: number, elapsedMs: number): ReadLoad {
  const sorted = sortedCopy(latency);
  return {
    requests: latency.length,
    inFlight,
    elapsedMs,
    msgsPerSec: (latency.length / elapsedMs) * 1000,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
  };
}

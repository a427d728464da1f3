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
import { accountReadLoop, readProblem } from './account-read.js';
import { benchToken, FIRST_FREE_ID, SETUP_TIMEOUT_MS, setupCall, startGatehouse } from './gatehouse-child.js';
import type { LineChild } from './line-child.js';
import { ms, ratio, row, us, int } from './report.js';
import {
  loadResult,
  loadTimeoutMs,
  measureLoop,
  summarizeLoads,
  type Connection,
  type LoadResult,
  type LoadSummary,
} from './stdio-load.js';

export interface RemoteControlBenchOptions {
  /** Sequential requests per round and path (1 in flight). */
  rttRequests: number;
  /** Requests per round and path at `clients x inFlightPerClient` in flight. */
  requests: number;
  clients: number;
  inFlightPerClient: number;
  rounds: number;
  /** Node flags for the gatehouse child (`--cpu-prof ...` under --cpu-prof). */
  nodeArgs: string[];
  progress: (message: string) => void;
}

export interface RemoteControlReport {
  parameters: Omit<RemoteControlBenchOptions, 'progress' | 'nodeArgs'>;
  local: { rtt: LoadSummary; pipelined: LoadSummary };
  remote: { rtt: LoadSummary; pipelined: LoadSummary };
  /** Remote figure / local figure. */
  ratios: {
    rttP50: number;
    rttP99: number;
    pipelinedReqPerSec: number;
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

    const rounds: { local: LoadResult; remote: LoadResult }[][] = [];
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

    const summary = (pick: (round: { local: LoadResult; remote: LoadResult }[]) => LoadResult) =>
      summarizeLoads(rounds.map(pick));
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
        pipelinedReqPerSec: remoteSide.pipelined.reqPerSec / localSide.pipelined.reqPerSec,
        pipelinedP50: remoteSide.pipelined.p50Ms / localSide.pipelined.p50Ms,
        pipelinedP99: remoteSide.pipelined.p99Ms / localSide.pipelined.p99Ms,
      },
      overheadUs: {
        roundTripP50: (remoteSide.rtt.p50Ms - localSide.rtt.p50Ms) * 1000,
        perMessageUnderLoad: 1e6 / remoteSide.pipelined.reqPerSec - 1e6 / localSide.pipelined.reqPerSec,
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

/** `inFlight` account/reads outstanding on the stdio connection (stdio-load.ts's closed loop). */
function stdioReads(connection: Connection, requests: number, inFlight: number): Promise<LoadResult> {
  return measureLoop(connection, accountReadLoop, requests, inFlight, loadTimeoutMs(requests));
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
): Promise<LoadResult> {
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
  return loadResult(latency, clients.length * inFlightPerClient, elapsedMs);
}

// ---------------------------------------------------------------------------------------------

export function printRemoteControlReport(report: RemoteControlReport): void {
  const { clients, inFlightPerClient } = report.parameters;
  const inFlight = clients * inFlightPerClient;
  const w = [44, 11, 9, 9, 28];
  console.log('');
  console.log(row(['Remote control (account/read)', 'req/s', 'p50 ms', 'p99 ms', 'req/s per round'], w));
  const loadRow = (label: string, x: LoadSummary) =>
    console.log(
      row(
        [
          label,
          int(x.reqPerSec),
          ms(x.p50Ms),
          ms(x.p99Ms),
          x.rounds.map((o) => int(o.reqPerSec)).join(' / '),
        ],
        w,
      ),
    );
  loadRow('  local stdio, 1 in flight (RTT)', report.local.rtt);
  loadRow('  remote via the relay, 1 in flight (RTT)', report.remote.rtt);
  loadRow(`  local stdio, ${inFlight} in flight`, report.local.pipelined);
  loadRow(`  remote, ${clients} clients x ${inFlightPerClient} in flight`, report.remote.pipelined);
  const q = [44, 11];
  const { ratios, overheadUs } = report;
  console.log('');
  console.log("Ratios remote / local (the local stdio path is this part's ceiling)");
  console.log(row(['  RTT p50', ratio(ratios.rttP50)], q));
  console.log(row(['  RTT p99', ratio(ratios.rttP99)], q));
  console.log(row([`  req/s at ${inFlight} in flight`, ratio(ratios.pipelinedReqPerSec)], q));
  console.log(row([`  p50 at ${inFlight} in flight`, ratio(ratios.pipelinedP50)], q));
  console.log(row([`  p99 at ${inFlight} in flight`, ratio(ratios.pipelinedP99)], q));
  console.log('');
  console.log(row(['Relay overhead', 'µs'], q));
  console.log(row(['  per round trip (RTT p50 remote - local)', us(overheadUs.roundTripP50)], q));
  console.log(
    row([`  per message at ${inFlight} in flight (1/rate)`, us(overheadUs.perMessageUnderLoad)], q),
  );
}

/**
 * The Responses relay against the local backend, in one run:
 *
 *  1. Turn throughput. THREADS threads each run TURNS_PER_THREAD text turns one after another
 *     (`turn/start` -> `turn/completed`), through `gatehouse app-server` over stdio. The ceiling is
 *     the same number of turns sent straight to the backend by this process: one Responses
 *     WebSocket per thread, the same `response.create` body, read to `response.completed`.
 *  2. The cost of a refresh round trip. Each sample is a turn on a new thread (so a new socket
 *     handshake, where the backend checks the bearer). Half the samples run after the backend
 *     revoked the current token: the handshake gets a 401, Gatehouse asks the host with
 *     `account/chatgptAuthTokens/refresh`, the host answers at once with a new token, and the
 *     handshake is retried. The cost is the median difference.
 *  3. The cost of attestation per outbound request: turns on new threads (one scoped handshake
 *     each) from a client that said `requestAttestation` and answers `attestation/generate` at
 *     once, against the same turns from a client that did not, alternating.
 *
 * The backend streams with no delay, so the figures are the relay's own overhead.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { startLocalBackend, type LocalBackend } from '../src/backend/local-backend.js';
import { DEFAULT_INSTRUCTIONS, responsesBody } from '../src/relay/outbound-headers.js';
import {
  BENCH_IDENTITY,
  benchToken,
  FIRST_FREE_ID,
  startGatehouse,
  type RpcMessage,
} from './gatehouse-child.js';
import { withTimeout, type LineChild } from './line-child.js';
import { median, percentile, sortedCopy } from './stats.js';
import { int, ms, ratio, row } from './report.js';

export interface RelayBenchOptions {
  threads: number;
  turnsPerThread: number;
  refreshSamples: number;
  rounds: number;
  /** Node flags for the gatehouse child (`--cpu-prof ...` under --cpu-prof). */
  nodeArgs: string[];
  progress: (message: string) => void;
}

export interface TurnLoad {
  turns: number;
  turnsPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

export interface RelayReport {
  parameters: Omit<RelayBenchOptions, 'progress' | 'nodeArgs'>;
  direct: TurnLoad & { rounds: TurnLoad[] };
  gatehouse: TurnLoad & { rounds: TurnLoad[] };
  refresh: {
    plainTurnMs: number;
    refreshedTurnMs: number;
    costMs: number;
    /** Refresh requests seen by the host: one per refreshed sample, or the run fails. */
    refreshRequests: number;
  };
  attestation: {
    plainTurnMs: number;
    attestedTurnMs: number;
    costMs: number;
    /** Attestation requests answered: one per attested sample, or the run fails. */
    attestationRequests: number;
  };
  ratios: {
    gatehouseTurnsPerSecOverDirect: number;
    refreshCostOverPlainTurn: number;
    attestedTurnOverPlainTurn: number;
  };
  /** Reconnects and fallbacks Gatehouse announced during the run (`error` with willRetry, `warning`). */
  retries: { count: number; first: string | null };
}

const TURN_TIMEOUT_MS = 30_000;
const PROMPT = 'Hello, relay!';
const EXPECTED_TEXT = `Echo: ${PROMPT}`;

export async function runRelayBench(options: RelayBenchOptions): Promise<RelayReport> {
  const codexHome = mkdtempSync(join(tmpdir(), 'gatehouse-bench-relay-'));
  const backend = await startLocalBackend({ port: 0, responseDelayMs: 0 });
  let client: RpcClient | undefined;
  let attesting: RpcClient | undefined;
  try {
    client = await startRelayClient(backend, codexHome, options.nodeArgs);
    options.progress(`relay warm-up: ${options.threads} threads x 2 turns, each path`);
    await directTurns(backend, client.token, options.threads, 2);
    await relayTurns(client, options.threads, 2);
    const direct: TurnLoad[] = [];
    const gatehouse: TurnLoad[] = [];
    for (let r = 1; r <= options.rounds; r++) {
      options.progress(
        `relay round ${r}/${options.rounds}: ${options.threads} threads x ${options.turnsPerThread} turns, direct then gatehouse`,
      );
      direct.push(await directTurns(backend, client.token, options.threads, options.turnsPerThread));
      gatehouse.push(await relayTurns(client, options.threads, options.turnsPerThread));
    }
    options.progress(
      `refresh: ${options.refreshSamples} turns on new threads, alternately after a revocation`,
    );
    const refresh = await refreshCost(backend, client, options.refreshSamples);
    options.progress(`attestation: ${options.refreshSamples} turns on new threads each, with and without`);
    attesting = await startRelayClient(backend, codexHome, options.nodeArgs, { requestAttestation: true });
    const attestation = await attestationCost(backend, client, attesting, options.refreshSamples);
    await attesting.close();
    await client.close();
    const retries = { count: client.retries.length, first: client.retries[0] ?? null };
    const summary = (rounds: TurnLoad[]) => ({
      turns: rounds[0]?.turns ?? 0,
      turnsPerSec: median(rounds.map((x) => x.turnsPerSec)),
      p50Ms: median(rounds.map((x) => x.p50Ms)),
      p99Ms: median(rounds.map((x) => x.p99Ms)),
      rounds,
    });
    const directSummary = summary(direct);
    const gatehouseSummary = summary(gatehouse);
    const { progress: _progress, nodeArgs: _nodeArgs, ...parameters } = options;
    return {
      parameters,
      direct: directSummary,
      gatehouse: gatehouseSummary,
      refresh,
      attestation,
      ratios: {
        gatehouseTurnsPerSecOverDirect: gatehouseSummary.turnsPerSec / directSummary.turnsPerSec,
        refreshCostOverPlainTurn: refresh.costMs / refresh.plainTurnMs,
        attestedTurnOverPlainTurn: attestation.attestedTurnMs / attestation.plainTurnMs,
      },
      retries,
    };
  } finally {
    client?.kill();
    attesting?.kill();
    await backend.close();
    rmSync(codexHome, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// The ceiling: turns sent straight to the backend.

async function directTurns(
  backend: LocalBackend,
  token: string,
  threads: number,
  turnsPerThread: number,
): Promise<TurnLoad> {
  const url = `${backend.chatgptBaseUrl.replace(/^https:/, 'wss:')}/codex/responses`;
  const sockets = await Promise.all(
    Array.from({ length: threads }, () => openSocket(url, token, backend.caCertPem)),
  );
  try {
    return await timedTurns(threads, turnsPerThread, (thread, turn) =>
      directTurn(sockets[thread]!, `bench-thread-${thread}`, turn),
    );
  } finally {
    for (const ws of sockets) ws.close();
  }
}

function openSocket(url: string, token: string, ca: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` }, ca: [ca] });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) =>
      reject(new Error(`direct handshake: HTTP ${res.statusCode}`)),
    );
  });
}

function directTurn(ws: WebSocket, threadId: string, turn: number): Promise<void> {
  const body = responsesBody({
    threadId,
    model: 'gpt-5',
    instructions: DEFAULT_INSTRUCTIONS,
    input: [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: PROMPT }] }],
  });
  return withTimeout(
    new Promise<void>((resolve, reject) => {
      let text = '';
      const onMessage = (data: unknown) => {
        const event = JSON.parse(String(data)) as { type: string; delta?: string };
        if (event.type === 'response.output_text.delta') text += event.delta ?? '';
        if (event.type !== 'response.completed' && event.type !== 'response.failed') return;
        ws.off('message', onMessage);
        if (event.type === 'response.completed' && text === EXPECTED_TEXT) resolve();
        else
          reject(
            new Error(`direct turn ${turn} on ${threadId}: ${event.type}, text ${JSON.stringify(text)}`),
          );
      };
      ws.on('message', onMessage);
      ws.send(JSON.stringify({ type: 'response.create', ...body }));
    }),
    TURN_TIMEOUT_MS,
    () => new Error(`direct turn ${turn} on ${threadId}: no response.completed within ${TURN_TIMEOUT_MS} ms`),
  );
}

// ---------------------------------------------------------------------------------------------
// Gatehouse: the same turns through the relay.

async function relayTurns(client: RpcClient, threads: number, turnsPerThread: number): Promise<TurnLoad> {
  const ids = await Promise.all(Array.from({ length: threads }, () => client.startThread()));
  return timedTurns(threads, turnsPerThread, (thread) => client.turn(ids[thread]!));
}

/** Runs `turnsPerThread` turns on each thread, threads in parallel, turns in sequence. */
async function timedTurns(
  threads: number,
  turnsPerThread: number,
  turn: (thread: number, n: number) => Promise<void>,
): Promise<TurnLoad> {
  const latencies: number[] = [];
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: threads }, async (_, thread) => {
      for (let n = 0; n < turnsPerThread; n++) {
        const start = performance.now();
        await turn(thread, n);
        latencies.push(performance.now() - start);
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const sorted = sortedCopy(latencies);
  return {
    turns: latencies.length,
    turnsPerSec: latencies.length / seconds,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
  };
}

async function refreshCost(
  backend: LocalBackend,
  client: RpcClient,
  samples: number,
): Promise<RelayReport['refresh']> {
  const plain: number[] = [];
  const refreshed: number[] = [];
  const refreshesBefore = client.refreshRequests;
  for (let i = 0; i < samples * 2; i++) {
    const revoke = i % 2 === 1;
    if (revoke) backend.revokeBearer(client.token);
    const threadId = await client.startThread();
    const start = performance.now();
    await client.turn(threadId);
    (revoke ? refreshed : plain).push(performance.now() - start);
  }
  const refreshRequests = client.refreshRequests - refreshesBefore;
  if (refreshRequests !== samples) {
    throw new Error(`refresh bench: ${refreshRequests} refresh requests for ${samples} revocations`);
  }
  const plainTurnMs = median(plain);
  const refreshedTurnMs = median(refreshed);
  return { plainTurnMs, refreshedTurnMs, costMs: refreshedTurnMs - plainTurnMs, refreshRequests };
}

async function attestationCost(
  backend: LocalBackend,
  plainClient: RpcClient,
  attestingClient: RpcClient,
  samples: number,
): Promise<RelayReport['attestation']> {
  const plain: number[] = [];
  const attested: number[] = [];
  const before = attestingClient.attestationRequests;
  const checkedBefore = attestedHandshakes(backend);
  for (let i = 0; i < samples * 2; i++) {
    const c = i % 2 === 0 ? plainClient : attestingClient;
    const threadId = await c.startThread();
    const start = performance.now();
    await c.turn(threadId);
    (c === attestingClient ? attested : plain).push(performance.now() - start);
  }
  const attestationRequests = attestingClient.attestationRequests - before;
  const carried = attestedHandshakes(backend) - checkedBefore;
  if (attestationRequests !== samples || carried !== samples) {
    throw new Error(
      `attestation bench: ${attestationRequests} requests and ${carried} attested handshakes for ${samples} turns`,
    );
  }
  const plainTurnMs = median(plain);
  const attestedTurnMs = median(attested);
  return { plainTurnMs, attestedTurnMs, costMs: attestedTurnMs - plainTurnMs, attestationRequests };
}

/** Handshakes the backend saw with a well-formed status-0 envelope. */
function attestedHandshakes(backend: LocalBackend): number {
  return backend.requests.filter(
    (r) => r.route === 'responses.ws' && r.attestation?.ok === true && r.attestation.status === 0,
  ).length;
}

// ---------------------------------------------------------------------------------------------
// A host over stdio: answers refresh requests at once with a new token, checks every turn.

/** A gatehouse child logged in with a fresh host-owned token, spoken to through an RpcClient. */
async function startRelayClient(
  backend: LocalBackend,
  codexHome: string,
  nodeArgs: string[],
  capabilities: { requestAttestation?: boolean } = {},
): Promise<RpcClient> {
  const accessToken = freshToken();
  const child = await startGatehouse(backend, {
    label: 'gatehouse (relay)',
    codexHome,
    nodeArgs,
    capabilities,
    accessToken,
  });
  return new RpcClient(child, accessToken);
}

class RpcClient {
  refreshRequests = 0;
  attestationRequests = 0;
  /** `error` notifications with `willRetry` and `warning`s: a clean run has none. */
  readonly retries: string[] = [];
  private nextId = FIRST_FREE_ID;
  private readonly calls = new Map<
    number,
    { resolve: (m: RpcMessage) => void; reject: (e: Error) => void }
  >();
  private readonly turns = new Map<
    string,
    { resolve: () => void; reject: (e: Error) => void; text: string }
  >();

  constructor(
    private readonly child: LineChild,
    /** The access token the host last handed to Gatehouse. */
    public token: string,
  ) {
    child.onLine = (line) => this.receive(JSON.parse(line) as RpcMessage);
  }

  call(method: string, params: unknown): Promise<RpcMessage> {
    const id = this.nextId++;
    const answer = new Promise<RpcMessage>((resolve, reject) => this.calls.set(id, { resolve, reject }));
    this.child.write(`${JSON.stringify({ id, method, params })}\n`);
    return withTimeout(answer, TURN_TIMEOUT_MS, () =>
      this.child.failure(`no answer to ${method} within ${TURN_TIMEOUT_MS} ms`),
    );
  }

  async startThread(): Promise<string> {
    const answer = await this.call('thread/start', {});
    return (answer.result as { thread: { id: string } }).thread.id;
  }

  /** One text turn, from `turn/start` to a completed `turn/completed` with the backend's echo. */
  async turn(threadId: string): Promise<void> {
    const done = new Promise<void>((resolve, reject) =>
      this.turns.set(threadId, { resolve, reject, text: '' }),
    );
    const answer = await this.call('turn/start', { threadId, input: [{ type: 'text', text: PROMPT }] });
    if (answer.error) throw this.child.failure(`turn/start failed: ${answer.error.message}`);
    await withTimeout(done, TURN_TIMEOUT_MS, () =>
      this.child.failure(`no turn/completed on ${threadId} within ${TURN_TIMEOUT_MS} ms`),
    );
  }

  async close(): Promise<void> {
    await this.child.close();
  }

  kill(): void {
    this.child.kill();
  }

  private receive(m: RpcMessage): void {
    if (m.method === 'account/chatgptAuthTokens/refresh' && m.id !== undefined) {
      this.refreshRequests++;
      this.token = freshToken();
      const result = {
        accessToken: this.token,
        chatgptAccountId: BENCH_IDENTITY.accountId,
        chatgptPlanType: null,
      };
      this.child.write(`${JSON.stringify({ id: m.id, result })}\n`);
      return;
    }
    if (m.method === 'attestation/generate' && m.id !== undefined) {
      this.attestationRequests++;
      this.child.write(
        `${JSON.stringify({ id: m.id, result: { token: `v1.bench-${this.attestationRequests}` } })}\n`,
      );
      return;
    }
    if (m.method === undefined && m.id !== undefined) {
      this.calls.get(m.id)?.resolve(m);
      this.calls.delete(m.id);
      return;
    }
    if (m.method === 'error' || m.method === 'warning')
      this.retries.push(JSON.stringify(m.params).slice(0, 200));
    const threadId = m.params?.threadId as string | undefined;
    const turn = threadId === undefined ? undefined : this.turns.get(threadId);
    if (!turn) return;
    if (m.method === 'item/agentMessage/delta') turn.text += m.params?.delta as string;
    if (m.method !== 'turn/completed') return;
    this.turns.delete(threadId!);
    const status = (m.params?.turn as { status?: string } | undefined)?.status;
    if (status === 'completed' && turn.text === EXPECTED_TEXT) turn.resolve();
    else
      turn.reject(
        this.child.failure(`turn on ${threadId} ended ${status}, text ${JSON.stringify(turn.text)}`),
      );
  }
}

/** Every token differs (its expiry does), so revoking one never revokes the next. */
let minted = 0;
function freshToken(): string {
  minted++;
  return benchToken(3600 + minted);
}

// ---------------------------------------------------------------------------------------------

export function printRelayReport(report: RelayReport): void {
  const { threads, turnsPerThread, refreshSamples } = report.parameters;
  const w = [44, 11, 9, 9, 28];
  const q = [44, 11];
  console.log('');
  console.log(
    row(
      [
        `Relay turns (${threads} threads x ${turnsPerThread})`,
        'turns/s',
        'p50 ms',
        'p99 ms',
        'turns/s per round',
      ],
      w,
    ),
  );
  const turnRow = (label: string, x: RelayReport['direct']) =>
    console.log(
      row(
        [
          label,
          int(x.turnsPerSec),
          ms(x.p50Ms),
          ms(x.p99Ms),
          x.rounds.map((o) => int(o.turnsPerSec)).join(' / '),
        ],
        w,
      ),
    );
  turnRow('  ceiling: direct to the local backend (WS)', report.direct);
  turnRow('  gatehouse app-server relay', report.gatehouse);
  const { refresh, attestation } = report;
  console.log('');
  console.log(row([`Refresh round trip (median of ${refreshSamples})`, 'ms'], q));
  console.log(row(['  turn on a new thread', ms(refresh.plainTurnMs)], q));
  console.log(row(['  same, after a revocation (401, refresh, retry)', ms(refresh.refreshedTurnMs)], q));
  console.log(row(['  cost of the refresh round trip', ms(refresh.costMs)], q));
  console.log('');
  console.log(row([`Attestation per outbound request (median of ${refreshSamples})`, 'ms'], q));
  console.log(row(['  turn on a new thread, client not capable', ms(attestation.plainTurnMs)], q));
  console.log(row(['  same, capable client answering at once', ms(attestation.attestedTurnMs)], q));
  console.log(row(['  added latency of attestation', ms(attestation.costMs)], q));
  console.log('');
  console.log(
    row(['  gatehouse turns/s / direct turns/s', ratio(report.ratios.gatehouseTurnsPerSecOverDirect)], q),
  );
  if (report.retries.count > 0) {
    console.log(
      `  (gatehouse announced ${report.retries.count} retries or fallbacks; first: ${report.retries.first})`,
    );
  }
  console.log(row(['  refresh cost / plain turn', ratio(report.ratios.refreshCostOverPlainTurn)], q));
  console.log(row(['  attested turn / plain turn', ratio(report.ratios.attestedTurnOverPlainTurn)], q));
}

/**
 * One load-test run: the local backend and the broker(s) for the chosen transport, N simulated
 * clients arriving over the ramp-up, each through its handshake; then the work phase (closed or
 * open loop) with its faults; then a drain, and the results.
 *
 * Phases are sequential so each figure has one meaning: handshake steps are measured while
 * clients arrive at the ramp-up's pace, operations while all of them are working.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLocalBackend, type LocalBackend } from '../backend/local-backend.js';
import { chatgptClaims, mintJwt } from '../backend/tokens.js';
import { silentLogger } from '../util/logger.js';
import { BrokerProbe } from './broker-probe.js';
import { openTarget, type BrokerTarget } from './broker-target.js';
import type { LoadtestOptions } from './options.js';
import { Recorder } from './recorder.js';
import type { LoadtestResults, ServerRequestCounts } from './results.js';
import { ACCOUNT_ID, SimulatedSession, type SessionContext, type WorkOperation } from './session.js';
import { LoadPause, SoakMonitor } from './soak.js';

export type Phase = 'starting' | 'handshakes' | 'work' | 'drain' | 'done';

/** What the progress bar shows, once a second. */
export interface ProgressState {
  phase: Phase;
  clientsReady: number;
  clients: number;
  completed: number;
  errors: number;
  perSec: number;
  p99Ms: number | null;
  /** 0..1 of the current phase. */
  fraction: number;
}

/** A client slot: the session in use and its fault plan; a reconnect replaces the session. */
interface Slot {
  index: number;
  session: SimulatedSession | undefined;
  silent: boolean;
  disconnects: boolean;
  /** `--session-ops`: the client ends its session after `opsUntilDrop` operations and comes back. */
  recycles: boolean;
  opsUntilDrop: number;
  reconnecting: Promise<void> | undefined;
}

const RECONNECT_PAUSE_MS = 100;

export async function runLoadtest(
  options: LoadtestOptions,
  onProgress: (state: ProgressState) => void = () => undefined,
): Promise<LoadtestResults> {
  const recorder = new Recorder();
  const now = () => performance.now();
  const random = seeded(options.seed);
  const loadStart = loadavg()[0] ?? 0;
  const startedAt = new Date().toISOString();
  const workDir = mkdtempSync(join(tmpdir(), 'gatehouse-loadtest-'));
  const serverRequests: ServerRequestCounts = { answered: 0, ignored: 0, byMethod: {} };
  const slots: Slot[] = [];
  /** Every session not yet closed, handshaking ones included: a timeout closes them all. */
  const open = new Set<SimulatedSession>();
  let phase: Phase = 'starting';
  let stopping = false;
  let timedOut = false;
  let disconnects = 0;
  let sessionsRecycled = 0;
  /** Operations a slot runs before it drops (the fault) or ends (--session-ops) its session. */
  const sessionLength = (slot: { disconnects: boolean }) =>
    1 + Math.floor(random() * (slot.disconnects ? 20 : (options.sessionOps ?? 20)));
  let clientsFinished: number;
  let workStart = 0;
  let workEnd: number | undefined;
  let started = 0;

  const backend: LocalBackend = await startLocalBackend({ port: 0, log: silentLogger() });
  const ctx: SessionContext = {
    recorder,
    now,
    freshToken: () =>
      mintJwt(
        chatgptClaims({
          email: 'dev@example.com',
          accountId: ACCOUNT_ID,
          userId: 'user-1',
          planType: 'plus',
          expiresInSec: 3600,
        }),
      ),
    requestTimeoutMs: options.requestTimeoutMs,
    serverRequests,
  };
  let target: BrokerTarget | undefined;
  let probe: BrokerProbe | undefined;
  let soak: SoakMonitor | undefined;
  const pause = options.soak ? new LoadPause() : undefined;
  /** Every client connected and none reconnecting: what a soak checkpoint waits for. */
  const allConnected = () => slots.every((s) => s.session !== undefined && s.reconnecting === undefined);
  const ready = () => slots.filter((s) => s.session !== undefined && s.reconnecting === undefined).length;
  const fractionDone = (): number => {
    if (phase === 'handshakes') return slots.length / options.clients;
    if (phase !== 'work') return phase === 'done' || phase === 'drain' ? 1 : 0;
    if (options.durationMs !== null) return Math.min(1, (now() - workStart) / options.durationMs);
    return options.requests ? Math.min(1, started / options.requests) : 1;
  };
  const ticker = setInterval(() => {
    recorder.tick(ready());
    probe?.sample();
    onProgress({
      phase,
      clientsReady: ready(),
      clients: options.clients,
      ...recorder.live(),
      fraction: fractionDone(),
    });
  }, 1000);
  const deadline = setTimeout(() => {
    timedOut = true;
    stopping = true;
    for (const session of open) session.close();
  }, options.timeoutMs);

  /** Connects a slot's client and runs its handshake; the slot keeps the session only if it passed. */
  const connect = async (slot: Slot, owner: boolean): Promise<void> => {
    let session: SimulatedSession;
    try {
      const link = await target!.connect(slot.index);
      // A warm-up client's steps go to a recorder nobody reads; a reconnect is measured.
      const measured = slot.index >= options.warmUpClients || slot.reconnecting !== undefined;
      const context = measured ? ctx : { ...ctx, recorder: new Recorder() };
      session = new SimulatedSession(link, { index: slot.index, owner, silent: slot.silent }, context);
      open.add(session);
      void session.closed.then(() => open.delete(session));
    } catch (e) {
      recorder.fail('initialize', 'connect', (e as Error).message, true);
      return;
    }
    if (stopping) return session.close();
    if (await session.handshake()) slot.session = session;
    else session.close();
  };

  /** Faults are drawn here, in arrival order, so a seed always picks the same clients. */
  const newSlot = (index: number, faulty: boolean): Slot => {
    const silent = faulty && random() < (options.faults.silent ?? 0);
    const slotDisconnects = faulty && random() < (options.faults.disconnect ?? 0);
    const slot: Slot = {
      index,
      session: undefined,
      silent,
      disconnects: slotDisconnects,
      // The first client of a shared broker keeps its session: it owns the login.
      recycles: faulty && options.sessionOps !== undefined,
      opsUntilDrop: sessionLength({ disconnects: slotDisconnects }),
      reconnecting: undefined,
    };
    slots.push(slot);
    return slot;
  };

  /**
   * The disconnect fault: drop the link with whatever is in flight, come back as a new session.
   * Also the end of a session under --session-ops, where nothing is in flight any more.
   */
  const dropAndReconnect = (slot: Slot): Promise<void> => {
    if (slot.disconnects) disconnects++;
    else sessionsRecycled++;
    slot.session?.close();
    slot.session = undefined;
    return new Promise<void>((resolve) => setTimeout(resolve, RECONNECT_PAUSE_MS))
      .then(() => (stopping ? undefined : connect(slot, target!.login === 'each')))
      .finally(() => {
        slot.opsUntilDrop = sessionLength(slot);
        slot.reconnecting = undefined;
      });
  };

  const pickOperation = weightedPicker(options.mix as Record<WorkOperation, number>, random);
  const backend401 = options.faults['backend-401'] ?? 0;
  const inject401 = () => {
    // The next Responses request gets a 401, and so does the reconnect's handshake: the broker
    // must refresh through the owning client and retry.
    backend.faults.add({ route: 'responses.ws.create', action: { kind: 'status', status: 401 }, times: 1 });
    backend.faults.add({ route: 'responses.ws', action: { kind: 'status', status: 401 }, times: 1 });
  };
  /** Starts one operation on a slot; resolves when it has ended (answered, failed or abandoned). */
  const operate = async (slot: Slot, startedAt: number): Promise<void> => {
    const session = slot.session!;
    const op = pickOperation();
    if (op === 'turn' && backend401 > 0 && random() < backend401) inject401();
    await session.run(op, startedAt);
    if ((slot.disconnects || slot.recycles) && --slot.opsUntilDrop <= 0 && slot.session === session) {
      slot.reconnecting ??= dropAndReconnect(slot);
    }
  };

  const more = (): boolean => {
    if (stopping) return false;
    if (options.requests !== null) return started < options.requests;
    return now() - workStart < options.durationMs!;
  };

  try {
    target = await openTarget(options.transport, {
      backend,
      workDir,
      config: options.config,
      nodeArgs: options.nodeArgs,
      freshToken: () => ctx.freshToken(),
      requestTimeoutMs: options.requestTimeoutMs,
    });
    probe = new BrokerProbe(target.inProcess ? 'this process' : () => target!.pids(), now, recorder.startMs);
    probe.sample();

    // Handshakes. On a shared broker the first client logs in before the others arrive.
    phase = 'handshakes';
    const arrivals: Promise<void>[] = [];
    let first = 0;
    if (target.login === 'first') {
      await connect(newSlot(0, false), true);
      if (!slots[0]!.session) throw new Error('the first client could not log the broker in: see the errors');
      first = 1;
    }
    if (options.soak) {
      soak = new SoakMonitor(target, options.soak, now);
      const operations = (Object.keys(options.mix) as WorkOperation[]).filter((op) => options.mix[op]! > 0);
      await soak.warmUpAndBaseline(ctx, operations, backend401 > 0 ? inject401 : undefined);
    }
    const spacing = options.clients > 1 ? options.rampUpMs / (options.clients - first) : 0;
    const rampStart = now();
    for (let i = first; i < options.clients && !stopping; i++) {
      const due = rampStart + (i - first) * spacing;
      const wait = due - now();
      if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
      arrivals.push(connect(newSlot(i, true), target.login === 'each'));
    }
    await Promise.all(arrivals);

    // Work.
    phase = 'work';
    workStart = now();
    soak?.startSampling({ hold: () => pause!.hold(allConnected), resume: () => pause!.resume() });
    const working: Promise<void>[] = [];
    if (options.mode === 'closed') {
      for (const slot of slots.filter((s) => s.session)) {
        for (let lane = 0; lane < options.inFlight; lane++) {
          working.push(
            (async () => {
              while (more()) {
                if (slot.reconnecting) await slot.reconnecting;
                if (pause) await pause.gate();
                if (!slot.session || !more()) return;
                started++;
                if (pause) pause.busy++;
                try {
                  await operate(slot, now());
                } finally {
                  if (pause) pause.busy--;
                }
                if (options.thinkMs > 0) await new Promise((resolve) => setTimeout(resolve, options.thinkMs));
              }
            })(),
          );
        }
      }
    } else {
      working.push(openLoop(options.ratePerSec!, slots, more, () => started++, operate, now, recorder));
    }
    await Promise.all(working);
    phase = 'drain';
    workEnd = now();
    if (soak) {
      // The end checkpoint: the lanes are done; clients still reconnecting come back first.
      await soak.endSampling(await pause!.hold(allConnected));
      // Every client leaves but the login owner, who was connected at the baseline too.
      stopping = true;
      const owner = target.login === 'first' ? slots[0]?.session : undefined;
      for (const session of open) if (session !== owner) session.close();
      await Promise.all([...open].filter((session) => session !== owner).map((session) => session.closed));
      await soak.afterClientsLeft();
    }
  } finally {
    stopping = true;
    clearTimeout(deadline);
    probe?.sample();
    clientsFinished = slots.filter((s) => s.session).length;
    for (const session of open) session.close();
    await target?.close().catch(() => undefined);
    clearInterval(ticker);
    await backend.close();
    rmSync(workDir, { recursive: true, force: true });
  }
  phase = 'done';
  recorder.tick(0);
  const elapsedMs = now() - recorder.startMs;
  const workPhaseMs = Math.max(1, (workEnd ?? now()) - workStart);
  const summary = recorder.summary(workPhaseMs, elapsedMs);
  soak?.workEnded(started, summary.operations);
  const work = summary.operations.filter((o) => !o.step);
  const completed = work.reduce((n, o) => n + o.completed, 0);
  return {
    tool: 'gatehouse loadtest',
    version: gatehouseVersion(),
    startedAt,
    elapsedMs,
    workPhaseMs,
    config: {
      transport: options.transport,
      clients: options.clients,
      rampUpMs: options.rampUpMs,
      durationMs: options.durationMs,
      requests: options.requests,
      mode: options.mode,
      ratePerSec: options.ratePerSec,
      inFlight: options.inFlight,
      mix: options.mix,
      faults: options.faults,
      timeoutMs: options.timeoutMs,
      ...(options.sessionOps !== undefined ? { sessionOps: options.sessionOps } : {}),
      ...(options.soak ? { soak: options.soak } : {}),
    },
    environment: {
      node: process.version,
      platform: `${process.platform}-${process.arch}`,
      cpus: availableParallelism(),
      cpuModel: cpus()[0]?.model ?? 'unknown',
      loadAverage: { start: loadStart, end: loadavg()[0] ?? 0 },
    },
    totals: {
      clientsStarted: slots.length,
      clientsFinished,
      disconnects,
      ...(options.sessionOps !== undefined ? { sessionsRecycled } : {}),
      completed,
      errors: summary.operations.reduce((n, o) => n + o.errors, 0),
      throughputPerSec: (completed * 1000) / workPhaseMs,
      serverRequests,
    },
    ...summary,
    broker: { pids: [...(probe?.pidsSeen ?? [])], samples: probe?.samples ?? [] },
    timedOut,
    ...(soak ? { soak: soak.results() } : {}),
  };
}

/**
 * Open loop: operations are due at a fixed rate whatever the answers, spread over the ready
 * clients in turn; each one's latency counts from when it was due, so a slow broker cannot
 * hide its queueing by slowing the arrivals down.
 */
async function openLoop(
  ratePerSec: number,
  slots: Slot[],
  more: () => boolean,
  count: () => void,
  operate: (slot: Slot, dueAt: number) => Promise<void>,
  now: () => number,
  recorder: Recorder,
): Promise<void> {
  const intervalMs = 1000 / ratePerSec;
  const inFlight = new Set<Promise<void>>();
  const start = now();
  let next = 0;
  let turn = 0;
  while (more()) {
    const due = start + next * intervalMs;
    const wait = due - now();
    if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
    if (!more()) break;
    next++;
    count();
    const slot = nextReady(slots, turn++);
    if (!slot) {
      recorder.fail('dispatch', 'no-client', 'no client was connected when an operation was due');
      continue;
    }
    const op = operate(slot, due).finally(() => inFlight.delete(op));
    inFlight.add(op);
  }
  await Promise.all(inFlight);
}

function nextReady(slots: Slot[], from: number): Slot | undefined {
  for (let i = 0; i < slots.length; i++) {
    const slot = slots[(from + i) % slots.length]!;
    if (slot.session && !slot.reconnecting) return slot;
  }
  return undefined;
}

function weightedPicker<K extends string>(weights: Record<K, number>, random: () => number): () => K {
  const entries = (Object.entries(weights) as [K, number][]).filter(([, w]) => w > 0);
  const total = entries.reduce((n, [, w]) => n + w, 0);
  return () => {
    let r = random() * total;
    for (const [name, w] of entries) if ((r -= w) < 0) return name;
    return entries[entries.length - 1]![0];
  };
}

/** mulberry32: a small seeded generator, so a run's fault and operation choices repeat. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The version in Gatehouse's package.json, found from here (src/ under tsx, dist/src/ built). */
function gatehouseVersion(): string {
  for (let dir = new URL('.', import.meta.url); dir.pathname !== '/'; dir = new URL('..', dir)) {
    try {
      const pkg = JSON.parse(readFileSync(new URL('package.json', dir), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'gatehouse' && pkg.version) return pkg.version;
    } catch {
      // not here: one folder up
    }
  }
  return 'unknown';
}

/**
 * A realistic `LoadtestResults` without running a load: a real Recorder (on a simulated clock)
 * fed a few thousand seeded samples of a 30-second in-process run of 200 clients (5 s of
 * handshakes, then `account/read` and `turn`), a few errors, and broker samples. The same seed
 * gives the same results, so report tests can assert on them.
 */
import { Recorder } from '../../src/loadtest/recorder.js';
import type { BrokerSample, LoadtestResults } from '../../src/loadtest/results.js';

export interface SampleOptions {
  /** Broker samples every second (default) or none, as when the broker could not be sampled. */
  brokerSamples?: boolean;
  /** Every work operation fails (a backend that is down): they have errors and no latencies. */
  workFails?: boolean;
  timedOut?: boolean;
}

export const SAMPLE_STEPS = ['initialize', 'login', 'attest'] as const;
export const SAMPLE_WORK = ['account/read', 'turn'] as const;

const CLIENTS = 200;
const RAMP_UP_S = 5;
const RUN_S = 30;
const MIB = 1024 * 1024;

/** mulberry32: a small seeded generator, so every run of the tests sees the same samples. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function sampleResults(options: SampleOptions = {}): LoadtestResults {
  const random = seeded(7);
  // Latencies are log-normal around a median, as request latencies usually are.
  const logNormal = (medianMs: number, sigma: number): number => {
    const z = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
    return medianMs * Math.exp(sigma * z);
  };

  let now = 1_000; // any origin: the recorder reports times relative to its start
  const recorder = new Recorder(() => now);
  const started = now;
  let active = 0;
  for (let second = 0; second < RUN_S; second++) {
    if (second < RAMP_UP_S) {
      for (let c = 0; c < CLIENTS / RAMP_UP_S; c++) {
        recorder.record('initialize', logNormal(1.2, 0.4), true);
        if (second === 2 && c < 2) {
          recorder.fail('login', 401, 'unauthorized: the access token has expired', true);
          continue;
        }
        recorder.record('login', logNormal(4, 0.5), true);
        recorder.record('attest', logNormal(9, 0.6), true);
        active++;
      }
    } else if (options.workFails) {
      for (let i = 0; i < 12; i++) recorder.fail('account/read', -32603, 'backend unavailable (503)');
      for (let i = 0; i < 2; i++) recorder.fail('turn', -32603, 'backend unavailable (503)');
    } else {
      for (let i = 0; i < 120; i++) recorder.record('account/read', logNormal(0.8, 0.7));
      for (let i = 0; i < 20; i++) recorder.record('turn', logNormal(45, 0.5));
      if (second % 7 === 0) recorder.fail('turn', -32001, 'Server overloaded; retry later.');
      if (second === 17) recorder.fail('account/read', 'timeout', 'no answer within 10000 ms');
    }
    now += 1_000;
    recorder.tick(active);
  }
  const elapsedMs = now - started;
  const workPhaseMs = (RUN_S - RAMP_UP_S) * 1_000;
  const { operations, errors, timeline } = recorder.summary(workPhaseMs, elapsedMs);

  const samples: BrokerSample[] = [];
  if (options.brokerSamples ?? true) {
    for (let second = 1; second <= RUN_S; second++) {
      samples.push({
        tMs: second * 1_000,
        cpuPercent: second <= RAMP_UP_S ? 40 + 8 * second : 85 + 10 * random(),
        rssBytes: Math.round((70 + Math.min(second, RAMP_UP_S) * 6 + 4 * random()) * MIB),
        heapUsedBytes: Math.round((20 + Math.min(second, RAMP_UP_S) * 4 + 6 * random()) * MIB),
      });
    }
  }

  const work = operations.filter((op) => !op.step);
  const workCompleted = work.reduce((sum, op) => sum + op.completed, 0);
  return {
    tool: 'gatehouse loadtest',
    version: '0.1.0',
    startedAt: '2025-01-15T10:00:00.000Z',
    elapsedMs,
    workPhaseMs,
    config: {
      transport: 'in-process',
      clients: CLIENTS,
      rampUpMs: RAMP_UP_S * 1_000,
      durationMs: workPhaseMs,
      requests: null,
      mode: 'closed',
      ratePerSec: null,
      inFlight: 1,
      mix: { 'account/read': 6, turn: 1 },
      faults: { 'expired-token': 0.01 },
      timeoutMs: 120_000,
    },
    environment: {
      node: 'v20.19.0',
      platform: 'linux',
      cpus: 2,
      cpuModel: 'Sample CPU @ 2.40GHz',
      loadAverage: { start: 0.42, end: 1.87 },
    },
    totals: {
      clientsStarted: CLIENTS,
      clientsFinished: CLIENTS,
      disconnects: 2,
      completed: operations.reduce((sum, op) => sum + op.completed, 0),
      errors: operations.reduce((sum, op) => sum + op.errors, 0),
      throughputPerSec: Math.round((workCompleted / workPhaseMs) * 1000 * 100) / 100,
      serverRequests: {
        answered: CLIENTS - 2,
        ignored: 0,
        byMethod: { 'attestation/generate': { answered: CLIENTS - 2, ignored: 0 } },
      },
    },
    operations,
    errors,
    timeline,
    broker: { pids: samples.length > 0 ? [4242] : [], samples },
    timedOut: options.timedOut ?? false,
  };
}

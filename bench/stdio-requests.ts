/**
 * The `stdio` part: one `gatehouse app-server` child over stdio, initialized (experimental API)
 * and logged in with host-owned tokens against the local backend, against the raw stdio echo
 * ceilings measured at the top of the run:
 *
 *  - mock/experimentalMethod (codex's mock: the transport, the decoder, the connection actor and
 *    the wire actor, no service) at the deep depth, at 64 in flight and at 1 in flight;
 *  - account/read at 64 in flight, the issue 7 target: the full actor path to the account
 *    service of a logged-in broker, every answer checked for its id and the bench account.
 *
 * Each round runs the four loads one after another, so that a burst of load from other work on
 * the box spreads over all of them; the figures are medians over rounds.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLocalBackend } from '../src/backend/local-backend.js';
import { accountReadLoop } from './account-read.js';
import { benchToken, FIRST_FREE_ID, startGatehouse } from './gatehouse-child.js';
import type { LineChild } from './line-child.js';
import { TARGET_IN_FLIGHT } from './options.js';
import { int, ms, ratio, row } from './report.js';
import {
  loadTimeoutMs,
  measureLoop,
  runLoad,
  summarizeLoads,
  type LoadResult,
  type LoadSummary,
  type LoadTarget,
} from './stdio-load.js';

export interface StdioBenchOptions {
  rounds: number;
  /** Mock requests per round at `deepInFlight`. */
  requests: number;
  deepInFlight: number;
  /** Mock requests and account/reads per round at TARGET_IN_FLIGHT. */
  requestsAt64: number;
  rttRequests: number;
}

export interface StdioReport {
  parameters: StdioBenchOptions & { targetInFlight: number };
  mock: { deep: LoadSummary; at64: LoadSummary; rtt: LoadSummary };
  accountRead: LoadSummary;
}

/** The raw echo's figures at the same depths, from the run's ceilings. */
export interface StdioCeilings {
  deep: LoadSummary;
  at64: LoadSummary;
  rtt: LoadSummary;
}

type Round = Record<'deep' | 'at64' | 'rtt' | 'accountRead', LoadResult>;

export async function runStdioBench(
  options: StdioBenchOptions,
  nodeArgs: string[],
  progress: (message: string) => void,
): Promise<StdioReport> {
  const codexHome = mkdtempSync(join(tmpdir(), 'gatehouse-bench-stdio-'));
  const backend = await startLocalBackend({ port: 0 });
  let child: LineChild | undefined;
  try {
    progress('stdio: starting gatehouse app-server, initializing, logging in with host-owned tokens');
    child = await startGatehouse(backend, {
      label: 'gatehouse (stdio)',
      codexHome,
      nodeArgs,
      accessToken: benchToken(3600),
    });
    // One connection; the mock and account/read loads share its ids.
    const target: LoadTarget = { child, resultKey: 'echoed', nextId: FIRST_FREE_ID };
    const { rounds, requests, deepInFlight, requestsAt64, rttRequests } = options;
    const mock = (n: number, inFlight: number) => runLoad(target, n, inFlight, loadTimeoutMs(n));
    const reads = (n: number) => measureLoop(target, accountReadLoop, n, TARGET_IN_FLIGHT, loadTimeoutMs(n));

    progress('stdio warm-up: each load at a fraction of its size');
    await reads(Math.min(requestsAt64, 20_000));
    await mock(Math.min(requests, 20_000), deepInFlight);
    await mock(Math.min(requestsAt64, 20_000), TARGET_IN_FLIGHT);
    await mock(Math.min(rttRequests, 1000), 1);
    const results: Round[] = [];
    for (let r = 1; r <= rounds; r++) {
      progress(
        `stdio round ${r}/${rounds}: mock ${requests} at ${deepInFlight} in flight, ${requestsAt64} at ` +
          `${TARGET_IN_FLIGHT}, ${rttRequests} at 1; account/read ${requestsAt64} at ${TARGET_IN_FLIGHT}`,
      );
      results.push({
        deep: await mock(requests, deepInFlight),
        at64: await mock(requestsAt64, TARGET_IN_FLIGHT),
        rtt: await mock(rttRequests, 1),
        accountRead: await reads(requestsAt64),
      });
    }
    await child.close();
    const of = (key: keyof Round) => summarizeLoads(results.map((r) => r[key]));
    return {
      parameters: {
        rounds,
        requests,
        deepInFlight,
        requestsAt64,
        rttRequests,
        targetInFlight: TARGET_IN_FLIGHT,
      },
      mock: { deep: of('deep'), at64: of('at64'), rtt: of('rtt') },
      accountRead: of('accountRead'),
    };
  } finally {
    child?.kill();
    await backend.close();
    rmSync(codexHome, { recursive: true, force: true });
  }
}

export function printStdioReport(report: StdioReport, echo: StdioCeilings | undefined): void {
  const { deepInFlight } = report.parameters;
  const w = [46, 11, 9, 9, 10, 28];
  console.log('');
  console.log(row(['Requests over stdio', 'req/s', 'p50 ms', 'p99 ms', 'x echo', 'req/s per round'], w));
  const line = (label: string, x: LoadSummary, base: LoadSummary | undefined, by: 'rate' | 'latency') =>
    console.log(
      row(
        [
          label,
          int(x.reqPerSec),
          ms(x.p50Ms),
          ms(x.p99Ms),
          base === undefined
            ? ''
            : ratio(by === 'rate' ? x.reqPerSec / base.reqPerSec : x.p50Ms / base.p50Ms),
          x.rounds.map((o) => int(o.reqPerSec)).join(' / '),
        ],
        w,
      ),
    );
  line(`  mock/experimentalMethod, ${deepInFlight} in flight`, report.mock.deep, echo?.deep, 'rate');
  line(`  mock/experimentalMethod, ${TARGET_IN_FLIGHT} in flight`, report.mock.at64, echo?.at64, 'rate');
  line(`  account/read (logged in), ${TARGET_IN_FLIGHT} in flight`, report.accountRead, echo?.at64, 'rate');
  line('  mock/experimentalMethod, 1 in flight (RTT)', report.mock.rtt, echo?.rtt, 'latency');
  console.log('  (x echo: req/s over the raw echo at the same depth; at 1 in flight, p50 over its p50)');
}

/**
 * The wire fuzzer against the built CLI as a child process, over stdio and over WebSocket.
 *
 * A seeded run generates rounds of lines (wire-arbitraries), sends each round (stdio: as one byte
 * stream cut at random offsets; WebSocket: one frame per line, some fragmented), and waits until
 * every valid request of the round is answered before the next, so the mailbox bound is never
 * the reason for an answer. At the end the whole output is checked against the plan
 * (wire-oracle), and the child's RSS is sampled from /proc/<pid>/status.
 */
import { isUtf8 } from 'node:buffer';
import fc from 'fast-check';
import { TestClient, WsTestClient, type RpcMessage } from '../helpers/app-server-process.js';
import { rssBytes } from '../helpers/proc-status.js';
import {
  chunkCuts,
  idKey,
  itemBytes,
  splitAt,
  uniquify,
  wireItem,
  type WireItem,
} from './wire-arbitraries.js';
import { answerKey, checkOutput, planFor, type OutputReport, type Plan } from './wire-oracle.js';

export interface ChildFuzzOptions {
  seed: number;
  /** Generated lines in all (over all WebSocket connections together). */
  lines: number;
  maxLineBytes: number;
  roundSize?: number;
  /** Per-round wait for the answers. */
  roundTimeoutMs?: number;
  /** Progress output (stderr). */
  progress?: (text: string) => void;
  /** stdio only: the size of the one line sent far over max_line_bytes (default 16). */
  hugeLineMiB?: number;
}

export interface RssSample {
  label: string;
  kib: number;
}

export interface ChildFuzzResult {
  lines: number;
  bytes: number;
  plan: Plan['counts'];
  report: OutputReport;
  rss: RssSample[];
  /** Extra lines of findings to print. */
  notes: string[];
}

/** VmRSS of a running process in KiB (Linux). */
export function rssKib(pid: number): number {
  const bytes = rssBytes(pid);
  if (bytes === undefined) throw new Error(`no VmRSS for pid ${pid}`);
  return bytes / 1024;
}

/** `count` lines in rounds of `roundSize`, ids unique over all of them. */
export function generateRounds(
  seed: number,
  count: number,
  roundSize: number,
  maxLineBytes: number,
): WireItem[][] {
  const rounds = Math.max(1, Math.ceil(count / roundSize));
  const arb = fc.array(wireItem({ maxLineBytes }), { minLength: roundSize, maxLength: roundSize });
  const all = uniquify(fc.sample(arb, { seed, numRuns: rounds }).flat());
  const out: WireItem[][] = [];
  for (let i = 0; i < all.length; i += roundSize) out.push(all.slice(i, i + roundSize));
  return out;
}

function randomNats(seed: number, n: number): number[] {
  return fc.sample(fc.nat(), { seed, numRuns: n });
}

/** Resolves once `done()` holds, checking on each message; fails after `timeoutMs`. */
function waitUntil(done: () => boolean, timeoutMs: number, what: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const tick = () => {
      if (done()) return resolve();
      if (Date.now() - started > timeoutMs)
        return reject(new Error(`timed out after ${timeoutMs} ms: ${what()}`));
      setTimeout(tick, 5);
    };
    tick();
  });
}

/** The ids of a round's valid requests. */
function expectedKeys(round: WireItem[]): string[] {
  return round.flatMap((item) => (item.type === 'request' ? [idKey(item.id)] : []));
}

// ---- stdio -----------------------------------------------------------------------------------

/**
 * One child, one connection on stdin: rounds of random chunks, then one huge line (far over
 * max_line_bytes, never buffered whole), then EOF: it must exit 0.
 */
export async function fuzzStdioChild(opts: ChildFuzzOptions): Promise<ChildFuzzResult> {
  const roundSize = opts.roundSize ?? 200;
  const rounds = generateRounds(opts.seed, opts.lines, roundSize, opts.maxLineBytes);
  const items = rounds.flat();
  const plan = planFor(items);
  const client = TestClient.spawn({
    args: ['-c', `gatehouse.max_line_bytes=${opts.maxLineBytes}`],
    logLevel: 'warn',
    readTimeoutMs: opts.roundTimeoutMs ?? 30_000,
  });
  const answered = new Set<string>();
  client.onMessage((m: RpcMessage) => {
    if (m.method === undefined) {
      const key = answerKey(client.rawLine(m));
      if (key) answered.add(key);
    }
  });
  const rss: RssSample[] = [];
  const notes: string[] = [];
  let bytes = 0;
  try {
    for (const [r, round] of rounds.entries()) {
      const stream = Buffer.concat(round.map(itemBytes));
      bytes += stream.length;
      const cuts = chunkCuts(stream.length, randomNats(opts.seed + r + 1, 1 + (r % 40)));
      for (const [i, chunk] of splitAt(stream, cuts).entries()) {
        if (i % 4 === 3) await client.write(chunk);
        else client.write(chunk).catch(() => undefined); // a dead child shows in the wait below
      }
      const keys = expectedKeys(round);
      await waitUntil(
        () => keys.every((k) => answered.has(k)) || client.exitStatusNow !== undefined,
        opts.roundTimeoutMs ?? 30_000,
        () => `round ${r}: ${keys.filter((k) => !answered.has(k)).length} of ${keys.length} answers missing`,
      );
      if (client.exitStatusNow)
        throw new Error(`the server exited during round ${r}: ${JSON.stringify(client.exitStatusNow)}`);
      // The first round warms the server up (modules, JIT): growth is measured from there.
      if (r === 0 || r === Math.floor(rounds.length / 2))
        rss.push({ label: `after round ${r + 1}`, kib: rssKib(client.child.pid!) });
      opts.progress?.(`stdio round ${r + 1}/${rounds.length}`);
    }
    rss.push({ label: `after ${rounds.length} rounds`, kib: rssKib(client.child.pid!) });
    // One line far over max_line_bytes, in 64 KiB writes: the framer must count it, not keep it.
    const hugeMiB = opts.hugeLineMiB ?? 16;
    const huge = Buffer.alloc(64 * 1024, 0x61);
    for (let i = 0; i < hugeMiB * 16; i++) await client.write(huge);
    await client.write('\n');
    bytes += hugeMiB * 1024 * 1024 + 1;
    const sentinel = await client.request('account/read', {}, 'sentinel-after-huge');
    if (!sentinel.result && !sentinel.error)
      throw new Error(`no answer after the huge line: ${JSON.stringify(sentinel)}`);
    rss.push({ label: `after a ${hugeMiB} MiB line`, kib: rssKib(client.child.pid!) });
    client.closeStdin();
    const status = await client.waitExit(10_000);
    if (status.code !== 0) notes.push(`exit on stdin EOF: ${JSON.stringify(status)} (expected code 0)`);
    if (client.badStdoutLines.length > 0)
      notes.push(`stdout lines that are not JSON objects: ${client.badStdoutLines.slice(0, 3).join(' | ')}`);
    const lines = client.stdoutLines.filter((l) => answerKey(l) !== 's:sentinel-after-huge');
    return {
      lines: items.length + 1,
      bytes,
      plan: plan.counts,
      report: checkOutput(lines, plan, client.codexHome),
      rss,
      notes,
    };
  } finally {
    await client.dispose();
  }
}

/** RSS once start-up has settled, so growth is measured from a floor. */
async function settledRss(pid: number): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, 300));
  return rssKib(pid);
}

/** A child fed a long stream, then SIGTERM while input still flows: it must exit 0. */
export async function sigtermMidStream(
  seed: number,
  maxLineBytes: number,
): Promise<{ status: { code: number | null; signal: string | null }; answersBefore: number }> {
  const client = TestClient.spawn({
    args: ['-c', `gatehouse.max_line_bytes=${maxLineBytes}`],
    logLevel: 'warn',
  });
  try {
    await client.initialize({ id: 'init', experimentalApi: true });
    const stream = Buffer.concat(generateRounds(seed, 400, 400, maxLineBytes).flat().map(itemBytes));
    client.write(stream.subarray(0, stream.length >> 1)).catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 50));
    client.signal('SIGTERM');
    // Input still flowing at exit: EPIPE on our side is expected.
    client.write(stream.subarray(stream.length >> 1)).catch(() => undefined);
    const status = await client.waitExit(10_000);
    return { status, answersBefore: client.messages.length };
  } finally {
    await client.dispose();
  }
}

// ---- WebSocket -------------------------------------------------------------------------------

/** Lines a WebSocket text frame cannot carry without the socket being closed (spec of RFC 6455). */
function wsSafe(item: WireItem): boolean {
  return !(item.type === 'silent' && (item.why === 'invalid UTF-8' || item.why === 'oversized'));
}

async function sendFrame(client: WsTestClient, item: WireItem, split: number): Promise<void> {
  const bytes = itemBytes(item);
  if (!isUtf8(bytes)) {
    // Noise that is not UTF-8 goes as a binary frame: dropped, the socket stays open.
    await new Promise<void>((resolve, reject) =>
      client.socket.send(bytes, { binary: true }, (e) => (e ? reject(e) : resolve())),
    );
    return;
  }
  if (split === 0 || bytes.length < 2) {
    await client.sendText(bytes.toString('utf8'));
    return;
  }
  // One message in two fragments, cut anywhere (even inside a UTF-8 sequence).
  const cut = 1 + (split % (bytes.length - 1));
  await new Promise<void>((resolve, reject) =>
    client.socket.send(bytes.subarray(0, cut), { binary: false, fin: false }, (e) =>
      e ? reject(e) : resolve(),
    ),
  );
  await new Promise<void>((resolve, reject) =>
    client.socket.send(bytes.subarray(cut), { binary: false, fin: true }, (e) => (e ? reject(e) : resolve())),
  );
}

export interface WsFuzzResult extends ChildFuzzResult {
  /** Close codes of the sockets sent a frame the protocol forbids. */
  closeCodes: Record<string, number>;
}

/**
 * One child listening on ws://127.0.0.1:0, `connections` sockets each with its own sequence, plus
 * sockets sent an invalid-UTF-8 text frame and an oversized frame (closed by the server: 1007,
 * 1009) and a binary frame (ignored). Ends with SIGTERM, which must exit 0.
 */
export async function fuzzWebSocketChild(
  opts: ChildFuzzOptions & { connections: number },
): Promise<WsFuzzResult> {
  const roundSize = opts.roundSize ?? 100;
  const server = TestClient.spawn({
    args: ['--listen', 'ws://127.0.0.1:0', '-c', `gatehouse.max_line_bytes=${opts.maxLineBytes}`],
    logLevel: 'info', // the `listening on` line
  });
  const clients: WsTestClient[] = [];
  const rss: RssSample[] = [];
  const notes: string[] = [];
  try {
    const url = await server.listenUrl();
    rss.push({ label: 'start', kib: await settledRss(server.child.pid!) });
    const perConnection = Math.ceil(opts.lines / opts.connections);
    const sessions = await Promise.all(
      Array.from({ length: opts.connections }, async (_, c) => {
        const rounds = generateRounds(opts.seed * 31 + c, perConnection, roundSize, opts.maxLineBytes).map(
          (r) => r.filter(wsSafe),
        );
        const client = await WsTestClient.connect(url, opts.roundTimeoutMs ?? 30_000);
        clients.push(client);
        return { client, rounds, plan: planFor(rounds.flat()) };
      }),
    );
    let bytes = 0;
    await Promise.all(
      sessions.map(async ({ client, rounds }, c) => {
        const answered = new Set<string>();
        client.onMessage(() => {
          const raw = client.frames[client.frames.length - 1]!;
          const key = answerKey(raw);
          if (key) answered.add(key);
        });
        const splits = randomNats(opts.seed + 7 * c, rounds.flat().length);
        let n = 0;
        for (const [r, round] of rounds.entries()) {
          for (const item of round) {
            bytes += itemBytes(item).length;
            await sendFrame(client, item, splits[n++]! % 4 === 0 ? splits[n - 1]! : 0);
          }
          const keys = expectedKeys(round);
          await waitUntil(
            () => keys.every((k) => answered.has(k)) || !client.isOpen,
            opts.roundTimeoutMs ?? 30_000,
            () =>
              `connection ${c} round ${r}: ${keys.filter((k) => !answered.has(k)).length} of ${keys.length} answers missing`,
          );
          if (!client.isOpen) throw new Error(`connection ${c} was closed by the server in round ${r}`);
        }
        opts.progress?.(`websocket connection ${c + 1}/${opts.connections} done`);
      }),
    );
    rss.push({ label: 'after all connections', kib: rssKib(server.child.pid!) });
    const closeCodes = await forbiddenFrames(url, opts.maxLineBytes, clients);
    // The server still serves a fresh connection after all of it.
    const fresh = await WsTestClient.connect(url);
    clients.push(fresh);
    const init = await fresh.initialize({ id: 'fresh' });
    if (!init.result) notes.push(`a fresh connection could not initialize: ${JSON.stringify(init)}`);
    const merged: OutputReport = { answers: 0, noiseAnswers: 0, notifications: 0, problems: [] };
    const counts = { requests: 0, silent: 0, noise: 0 };
    for (const { client, plan } of sessions) {
      const report = checkOutput(client.frames, plan, server.codexHome);
      merged.answers += report.answers;
      merged.noiseAnswers += report.noiseAnswers;
      merged.notifications += report.notifications;
      merged.problems.push(...report.problems);
      counts.requests += plan.counts.requests;
      counts.silent += plan.counts.silent;
      counts.noise += plan.counts.noise;
    }
    server.signal('SIGTERM');
    const status = await server.waitExit(10_000);
    if (status.code !== 0) notes.push(`exit on SIGTERM: ${JSON.stringify(status)} (expected code 0)`);
    if (server.stdoutText !== '') notes.push('the WebSocket mode wrote on stdout');
    const lines = sessions.reduce((sum, s) => sum + s.rounds.flat().length, 0) + 3;
    return { lines, bytes, plan: counts, report: merged, rss, notes, closeCodes };
  } finally {
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
    await server.dispose();
  }
}

/** Frames the server must refuse by closing, and one it must ignore; returns the close codes. */
async function forbiddenFrames(
  url: string,
  maxLineBytes: number,
  clients: WsTestClient[],
): Promise<Record<string, number>> {
  const codes: Record<string, number> = {};
  const sendRaw = (client: WsTestClient, data: Buffer, binary: boolean) =>
    new Promise<void>((resolve) => client.socket.send(data, { binary }, () => resolve()));
  const closedWithin = async (client: WsTestClient, what: string) => {
    const timer = new Promise<{ code: number }>((resolve) => setTimeout(() => resolve({ code: -1 }), 5_000));
    codes[what] = (await Promise.race([client.closed, timer])).code;
  };
  const badUtf8 = await WsTestClient.connect(url);
  clients.push(badUtf8);
  await sendRaw(badUtf8, Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), false);
  await closedWithin(badUtf8, 'invalid UTF-8 text frame');
  const oversized = await WsTestClient.connect(url);
  clients.push(oversized);
  await sendRaw(oversized, Buffer.alloc(maxLineBytes + 1, 0x20), false);
  await closedWithin(oversized, 'frame over max_line_bytes');
  const binary = await WsTestClient.connect(url);
  clients.push(binary);
  await sendRaw(binary, Buffer.from('{"id":"bin","method":"initialize","params":{}}'), true);
  const reply = await binary.request(
    'initialize',
    { clientInfo: { name: 'after_binary', version: '1' } },
    'after-binary',
  );
  codes['binary frame then a request'] = reply.id === 'after-binary' && binary.isOpen ? 0 : -1;
  return codes;
}

/**
 * Shared by the chaos tests (test/integration/chaos-*.test.ts): how many rounds to run, and a
 * tally of faults injected and requests sent, answered and lost, printed for the report.
 *
 * `npm test` runs one round of every scenario; `CHAOS_ROUNDS=50 node --import tsx --test
 * test/integration/chaos-*.test.ts` repeats the same scenarios, against the same broker, 50 times.
 */
import assert from 'node:assert/strict';
import { verify } from 'node:crypto';
import type { InProcessClient } from '../../src/index.js';
import type { RpcMessage, TestClient } from './app-server-process.js';
import { connectionPayload } from './device-key-cases.js';

/** `CHAOS_ROUNDS` (default 1): repetitions of each scenario. */
export function chaosRounds(): number {
  const text = process.env.CHAOS_ROUNDS ?? '1';
  const rounds = Number(text);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 100_000)
    throw new Error(`CHAOS_ROUNDS must be a whole number from 1 to 100000, not ${JSON.stringify(text)}`);
  return rounds;
}

/** What one scenario did, over all its rounds. */
export class ChaosTally {
  faults = 0;
  sent = 0;
  /** Answered with a result. */
  succeeded = 0;
  /** Answered with an error (or a stream that ended with one); counted per message. */
  readonly failures = new Map<string, number>();
  /** Not answered within the bound: the invariant is broken. */
  lost = 0;

  constructor(readonly scenario: string) {}

  failed(message: string): void {
    this.failures.set(message, (this.failures.get(message) ?? 0) + 1);
  }

  get failedCount(): number {
    let n = 0;
    for (const count of this.failures.values()) n += count;
    return n;
  }

  /** One line for the lead's note; `t.diagnostic` puts it in the test report. */
  summary(extra = ''): string {
    const reasons = [...this.failures].map(([m, n]) => `${n}x ${JSON.stringify(m)}`).join('; ');
    return (
      `chaos ${this.scenario}: ${this.faults} faults, ${this.sent} requests in flight or after, ` +
      `${this.succeeded} succeeded, ${this.failedCount} failed clearly, ${this.lost} lost` +
      (reasons ? ` [${reasons}]` : '') +
      (extra ? `; ${extra}` : '')
    );
  }

  report(t: { diagnostic(message: string): void }, extra = ''): void {
    t.diagnostic(this.summary(extra));
  }

  assertNoneLost(): void {
    assert.equal(this.lost, 0, `requests lost: ${this.summary()}`);
    assert.equal(
      this.succeeded + this.failedCount,
      this.sent,
      `every request answered once: ${this.summary()}`,
    );
  }
}

/**
 * Waits for every promise, up to `ms` in all; those still pending then are reported as
 * undefined (lost), so a broken invariant fails the test instead of hanging it.
 */
export async function settleWithin<T>(
  promises: readonly Promise<T>[],
  ms: number,
): Promise<(PromiseSettledResult<T> | undefined)[]> {
  const results: (PromiseSettledResult<T> | undefined)[] = promises.map(() => undefined);
  const tracked = promises.map((p, i) =>
    p.then(
      (value) => void (results[i] = { status: 'fulfilled', value }),
      (reason: unknown) => void (results[i] = { status: 'rejected', reason }),
    ),
  );
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  await Promise.race([Promise.all(tracked), deadline]);
  clearTimeout(timer);
  return results;
}

/** `promise`, or a rejection naming `what` once `ms` have passed. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `check` until it holds, up to `ms`; returns whether it did. */
export async function eventually(check: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export interface RpcAnswer {
  id?: unknown;
  result?: Record<string, string>;
  error?: { code: number; message: string };
}

type Call = (method: string, params: unknown) => Promise<RpcAnswer>;

/**
 * Calls waiting for their answers by id: `answer` settles one (false when the id is not one of
 * ours), `closed` rejects every one still waiting, `call` sends a new one through `send`.
 */
function callTable(send: (id: string, method: string, params: unknown) => void | Promise<void>) {
  const pending = new Map<unknown, { resolve(m: RpcAnswer): void; reject(e: Error): void }>();
  let next = 0;
  return {
    answer(message: RpcAnswer): boolean {
      const waiter = pending.get(message.id);
      if (!waiter) return false;
      pending.delete(message.id);
      waiter.resolve(message);
      return true;
    },
    closed(reason: string): void {
      for (const waiter of pending.values()) waiter.reject(new Error(reason));
      pending.clear();
    },
    call: ((method, params) =>
      new Promise<RpcAnswer>((resolve, reject) => {
        const id = `chaos-${next++}`;
        pending.set(id, { resolve, reject });
        Promise.resolve(send(id, method, params)).catch(reject);
      })) as Call,
  };
}

/**
 * JSON-RPC over an in-process client: each call resolves with its answer, or rejects when the
 * connection closes first (the other acceptable outcome).
 */
export function inProcessCaller(client: InProcessClient): Call {
  const table = callTable((id, method, params) => client.send({ id, method, params }));
  client.on('message', (message) => void table.answer(message as RpcAnswer));
  client.on('close', () => table.closed('the connection closed'));
  return table.call;
}

/**
 * The same for the built CLI over stdio: answers are matched by id as they arrive (any order),
 * and every call still waiting rejects when the process exits. Everything else the server sends
 * (notifications, server requests) goes to `onOther`.
 */
export function processCaller(client: TestClient, onOther: (message: RpcMessage) => void = () => {}): Call {
  const table = callTable((id, method, params) => client.sendRequest(method, params, id).then(() => {}));
  client.onMessage((message) => {
    if (message.method !== undefined || !table.answer(message as RpcAnswer)) onOther(message);
  });
  void client.exited.then((status) =>
    table.closed(`the server exited (code ${status.code}, signal ${status.signal})`),
  );
  return table.call;
}

/**
 * Starts `count` calls at once; `reached(n)` resolves the moment the n-th settles (polling
 * could miss the whole run of a fast batch).
 */
export function startInFlight<T>(count: number, start: (i: number) => Promise<T>) {
  let answered = 0;
  const waiters: { n: number; resolve(): void }[] = [];
  const count1 = () => {
    answered++;
    for (const w of waiters.filter((w) => w.n <= answered)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  };
  const calls = Array.from({ length: count }, (_, i) => {
    const call = start(i);
    call.then(count1, count1);
    return call;
  });
  const reached = (n: number) =>
    n <= answered ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ n, resolve }));
  return { calls, reached };
}

/**
 * Tallies device/key/sign answers: a signature must verify with the key's public key (SPKI DER,
 * base64); an error goes to `onError`, which asserts it is an expected one and returns the text
 * to count it under. A connection that closed counts as failed with its reason.
 */
async function tallySigns(
  tally: ChaosTally,
  calls: Promise<RpcAnswer>[],
  publicKeySpkiDerBase64: string,
  onError: (error: RpcAnswer['error']) => string,
  boundMs: number,
): Promise<void> {
  const key = { key: Buffer.from(publicKeySpkiDerBase64, 'base64'), format: 'der', type: 'spki' } as const;
  tally.sent += calls.length;
  for (const result of await settleWithin(calls, boundMs)) {
    if (!result) tally.lost++;
    else if (result.status === 'rejected') tally.failed(`connection closed: ${String(result.reason)}`);
    else if (result.value.result) {
      const { signatureDerBase64, signedPayloadBase64 } = result.value.result;
      const signed = Buffer.from(signedPayloadBase64!, 'base64');
      const signature = Buffer.from(signatureDerBase64!, 'base64');
      assert.ok(
        verify('sha256', signed, { ...key, dsaEncoding: 'der' }, signature),
        'the signature verifies',
      );
      tally.succeeded++;
    } else tally.failed(onError(result.value.error));
  }
}

/**
 * Signing with one device key: `sign()` sends device/key/sign with a fresh connection payload,
 * `check(calls)` tallies the answers as `tallySigns` does.
 */
export function signingWith(
  call: Call,
  key: Record<string, string>,
  tally: ChaosTally,
  onError: (error: RpcAnswer['error']) => string,
  boundMs: number,
) {
  return {
    sign: () =>
      call('device/key/sign', {
        keyId: key.keyId,
        payload: connectionPayload(Math.floor(Date.now() / 1000)),
      }),
    check: (calls: Promise<RpcAnswer>[]) =>
      tallySigns(tally, calls, key.publicKeySpkiDerBase64!, onError, boundMs),
  };
}

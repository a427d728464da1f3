/**
 * The scripted session of one simulated client, as a host would drive codex:
 *
 *   initialize (attestation-capable) -> authenticated -> attested, then operations on demand.
 *
 * - `authenticated`: the client that owns its broker's login sends `account/login/start` with
 *   host-owned tokens; the others (on a broker someone already logged into) confirm the shared
 *   login with `account/read`, as a second IDE window would.
 * - `attested`: the first turn opens the thread's Responses WebSocket, which makes the broker ask
 *   `attestation/generate`; the step lasts from `turn/start` to that request (answered at once).
 * - operations: `account/read`, `turn` (`turn/start` to its `turn/completed`) and `sign`
 *   (`device/key/sign` with a key the client creates on first use).
 *
 * Server requests are answered at once (`attestation/generate` with a token, the refresh with
 * freshly minted tokens) unless the client plays the `silent` fault, which never answers.
 */
import type { Recorder } from './recorder.js';
import type { ServerRequestCounts } from './results.js';
import type { ClientLink, Message } from './client-link.js';
import { RpcClient, RpcFailure, type Outcome, type RpcError } from './rpc-client.js';

export const WORK_OPERATIONS = ['account/read', 'turn', 'sign'] as const;
export type WorkOperation = (typeof WORK_OPERATIONS)[number];

/** The account every simulated host logs in with (the local backend's user). */
export const ACCOUNT_ID = 'acct-1';

/** A host's answer to `account/chatgptAuthTokens/refresh`: fresh tokens for the same account. */
export function refreshResult(accessToken: string): Record<string, unknown> {
  return { accessToken, chatgptAccountId: ACCOUNT_ID, chatgptPlanType: null };
}

export interface ClientProfile {
  index: number;
  /** Logs its broker in (rather than confirming someone else's login). */
  owner: boolean;
  /** Never answers server requests. */
  silent: boolean;
}

export interface SessionContext {
  recorder: Recorder;
  now(): number;
  /** A new host-owned access token for the account (a fresh JWT). */
  freshToken(): string;
  requestTimeoutMs: number;
  serverRequests: ServerRequestCounts;
}

const initializeParams = (index: number) => ({
  clientInfo: { name: 'gatehouse_loadtest', title: `simulated client ${index}`, version: '0.1.0' },
  capabilities: { experimentalApi: true, requestAttestation: true },
});

/** Thrown by a step or operation that failed; the runner records nothing more for it. */
class StepFailed extends Error {}

export class SimulatedSession {
  /** Set just before the session closes its own link (the disconnect fault, the end of the run). */
  closing = false;
  private readonly rpc: RpcClient;
  /** Threads not running a turn; lanes take one and give it back. */
  private readonly idleThreads: string[] = [];
  private keyId: Promise<string> | undefined;

  constructor(
    link: ClientLink,
    readonly profile: ClientProfile,
    private readonly ctx: SessionContext,
  ) {
    this.rpc = new RpcClient(link, (m) => this.serverRequest(m), ctx.requestTimeoutMs);
  }

  /** Settles once the client's link is gone, whichever side closed it. */
  get closed(): Promise<string> {
    return this.rpc.closed;
  }

  /** Runs the three handshake steps; false when one failed (already recorded). */
  async handshake(): Promise<boolean> {
    try {
      await this.step('initialize', () =>
        this.rpc.request('initialize', initializeParams(this.profile.index)),
      );
      if (this.profile.owner) {
        await this.step('authenticated', () =>
          this.rpc.request('account/login/start', {
            type: 'chatgptAuthTokens',
            accessToken: this.ctx.freshToken(),
            chatgptAccountId: ACCOUNT_ID,
          }),
        );
      } else {
        await this.step('authenticated', async () => {
          const read = await this.rpc.request('account/read', {});
          return read.ok && read.result.account == null
            ? { ok: false, error: { code: 'not-authenticated', message: 'account/read: no account' } }
            : read;
        });
      }
      await this.attest();
      return true;
    } catch (e) {
      if (e instanceof StepFailed) return false;
      throw e;
    }
  }

  /** Runs one work operation; `startedAt` is when it was due (open loop) or sent (closed loop). */
  async run(op: WorkOperation, startedAt: number): Promise<void> {
    try {
      switch (op) {
        case 'account/read':
          return this.finish(op, startedAt, await this.rpc.request('account/read', {}));
        case 'turn':
          return await this.turn(startedAt);
        case 'sign':
          return await this.sign(startedAt);
      }
    } catch (e) {
      if (!(e instanceof StepFailed)) throw e;
    }
  }

  close(): void {
    this.closing = true;
    this.rpc.close();
  }

  private async attest(): Promise<void> {
    const threadId = await this.newThread('attested');
    const started = this.ctx.now();
    const asked = this.profile.silent
      ? undefined
      : this.rpc.waitFor((m) => m.method === 'attestation/generate', 'attestation/generate');
    // A silent client is asked too but never answers: it never becomes attested, and its first
    // turn waits for the broker's attestation deadline.
    asked?.catch(() => undefined);
    const completed = this.runTurn(threadId);
    if (asked) {
      try {
        await asked;
        this.ctx.recorder.record('attested', this.ctx.now() - started, true);
      } catch (e) {
        this.failed('attested', (e as RpcFailure).error, true);
      }
    }
    const outcome = await completed;
    if (!outcome.ok) this.failed('attested', outcome.error, true);
    this.idleThreads.push(threadId);
  }

  private async turn(startedAt: number): Promise<void> {
    const threadId = this.idleThreads.pop() ?? (await this.newThread('thread/start'));
    try {
      this.finish('turn', startedAt, await this.runTurn(threadId));
    } finally {
      this.idleThreads.push(threadId);
    }
  }

  /** `turn/start`, then its `turn/completed`, as one outcome. */
  private async runTurn(threadId: string): Promise<Outcome> {
    // Matched by thread, not turn id: the completion can be read before the answer to
    // `turn/start` is, and a thread runs one turn at a time here.
    const completed = this.rpc.waitFor(
      (m) =>
        m.method === 'turn/completed' &&
        (m.params as { threadId?: unknown } | undefined)?.threadId === threadId,
      'turn/completed',
    );
    completed.catch(() => undefined);
    const started = await this.rpc.request('turn/start', {
      threadId,
      input: [{ type: 'text', text: `load test turn from client ${this.profile.index}` }],
    });
    if (!started.ok) return started;
    try {
      const turn = turnOf(await completed);
      return turn?.status === 'completed'
        ? { ok: true, result: {} }
        : {
            ok: false,
            error: { code: `turn-${turn?.status ?? 'unknown'}`, message: 'the turn did not complete' },
          };
    } catch (e) {
      return { ok: false, error: (e as RpcFailure).error };
    }
  }

  private async newThread(step: 'attested' | 'thread/start'): Promise<string> {
    const started = this.ctx.now();
    const outcome = await this.rpc.request('thread/start', {});
    const id = outcome.ok ? (outcome.result.thread as { id?: string } | undefined)?.id : undefined;
    if (id === undefined) {
      this.failed(
        step,
        outcome.ok ? { code: 'bad-answer', message: 'thread/start: no thread id' } : outcome.error,
        step === 'attested',
      );
      throw new StepFailed();
    }
    if (step === 'thread/start') this.ctx.recorder.record(step, this.ctx.now() - started);
    return id;
  }

  private async sign(startedAt: number): Promise<void> {
    this.keyId ??= this.createKey();
    const keyId = await this.keyId;
    const now = Math.floor(Date.now() / 1000);
    const payload = {
      type: 'remoteControlClientConnection',
      nonce: Buffer.alloc(32, this.profile.index % 251).toString('base64url'),
      audience: 'remote_control_client_websocket',
      sessionId: `wssess_loadtest_${this.profile.index}`,
      targetOrigin: 'https://chatgpt.com',
      targetPath: '/api/codex/remote/control/client',
      accountUserId: 'loadtest-user',
      clientId: `loadtest-client-${this.profile.index}`,
      tokenSha256Base64url: '47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU',
      tokenExpiresAt: now + 300,
      scopes: ['remote_control_controller_websocket'],
    };
    this.finish('sign', startedAt, await this.rpc.request('device/key/sign', { keyId, payload }));
  }

  private async createKey(): Promise<string> {
    const started = this.ctx.now();
    const outcome = await this.rpc.request('device/key/create', {
      accountUserId: 'loadtest-user',
      clientId: `loadtest-client-${this.profile.index}`,
      protectionPolicy: 'allow_os_protected_nonextractable',
    });
    const keyId = outcome.ok ? (outcome.result.keyId as string | undefined) : undefined;
    if (keyId === undefined) {
      this.keyId = undefined;
      this.failed(
        'device/key/create',
        outcome.ok ? { code: 'bad-answer', message: 'no keyId' } : outcome.error,
      );
      throw new StepFailed();
    }
    this.ctx.recorder.record('device/key/create', this.ctx.now() - started);
    return keyId;
  }

  private async step(name: string, call: () => Promise<Outcome>): Promise<void> {
    const started = this.ctx.now();
    const outcome = await call();
    if (!outcome.ok) {
      this.failed(name, outcome.error, true);
      throw new StepFailed();
    }
    this.ctx.recorder.record(name, this.ctx.now() - started, true);
  }

  private finish(op: string, startedAt: number, outcome: Outcome): void {
    if (outcome.ok) this.ctx.recorder.record(op, this.ctx.now() - startedAt);
    else this.failed(op, outcome.error);
  }

  private failed(op: string, error: RpcError, step = false): void {
    // A client that was told to go away (or went) mid-request is not an error of the broker.
    if (error.code === 'closed' && this.closing) return;
    this.ctx.recorder.fail(op, error.code, error.message, step);
  }

  private serverRequest(m: Message): void {
    const method = String(m.method);
    const answer = this.profile.silent ? undefined : this.answerTo(method);
    if (answer !== undefined) this.rpc.answer(m.id, answer);
    const counts = this.ctx.serverRequests;
    const mine = (counts.byMethod[method] ??= { answered: 0, ignored: 0 });
    const outcome = answer === undefined ? 'ignored' : 'answered';
    counts[outcome]++;
    mine[outcome]++;
  }

  private answerTo(method: string): unknown {
    switch (method) {
      case 'attestation/generate':
        return { token: `loadtest-attestation-${this.profile.index}` };
      case 'account/chatgptAuthTokens/refresh':
        return refreshResult(this.ctx.freshToken());
      default:
        return undefined;
    }
  }
}

function turnOf(m: Message): { id?: string; status?: string } | undefined {
  return (m.params as { turn?: { id?: string; status?: string } } | undefined)?.turn;
}

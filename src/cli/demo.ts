/**
 * `gatehouse demo` (`npm start`): an offline tour of the whole path. It starts the local backend
 * on loopback, spawns `gatehouse app-server` as a real child process pointed at it, and plays a
 * host that logs in with its own ChatGPT tokens, runs a turn, and survives a 401 by answering the
 * server's refresh request. Everything is printed as a timeline of the JSON lines exchanged.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startLocalBackend } from '../backend/local-backend.js';
import { chatgptClaims, mintJwt } from '../backend/tokens.js';

type Message = Record<string, unknown> & { id?: number | string; method?: string; params?: unknown };

const WAIT_MS = 15_000;

export async function runDemo(): Promise<number> {
  const started = performance.now();
  const stamp = () => `${(performance.now() - started).toFixed(0).padStart(6)} ms`;
  const say = (text: string) => console.log(`\n${stamp()}  # ${text}`);
  const show = (arrow: string, m: Message) => {
    const text = JSON.stringify(m).replace(/eyJ[\w-]+\.[\w-]+\.[\w-]*/g, '<jwt>');
    console.log(`${stamp()}  ${arrow} ${text.length > 200 ? `${text.slice(0, 197)}...` : text}`);
  };

  const codexHome = mkdtempSync(join(tmpdir(), 'gatehouse-demo-'));
  const backend = await startLocalBackend({ port: 0, responseDelayMs: 20 });
  const cli = fileURLToPath(new URL('./main.js', import.meta.url));
  const child = spawn(
    process.execPath,
    [cli, 'app-server', '-c', `chatgpt_base_url=${backend.chatgptBaseUrl}`],
    {
      env: {
        ...process.env,
        CODEX_HOME: codexHome,
        CODEX_CA_CERTIFICATE: backend.caCertPath,
        GATEHOUSE_LOG: 'silent',
      },
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  const inbox: Message[] = [];
  let wake: (() => void) | undefined;
  let partial = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop()!;
    for (const line of lines.filter(Boolean)) inbox.push(JSON.parse(line) as Message);
    wake?.();
  });
  const send = (m: Message) => {
    show('→', m);
    child.stdin.write(`${JSON.stringify(m)}\n`);
  };
  /** Reads messages (printing them) until one matches. */
  const until = (pred: (m: Message) => boolean, what: string) =>
    new Promise<Message>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`demo: no ${what} within ${WAIT_MS} ms`)), WAIT_MS);
      let deltas = '';
      const check = () => {
        for (let m = inbox.shift(); m; m = inbox.shift()) {
          if (m.method === 'item/agentMessage/delta') {
            deltas += (m.params as { delta: string }).delta;
            continue;
          }
          if (deltas) {
            console.log(`${stamp()}  ← item/agentMessage/delta × n: ${JSON.stringify(deltas)}`);
            deltas = '';
          }
          show('←', m);
          if (pred(m)) {
            clearTimeout(timer);
            wake = undefined;
            resolve(m);
            return;
          }
        }
      };
      wake = check;
      check();
    });
  const request = async (id: number, method: string, params?: unknown) => {
    send(params === undefined ? { id, method } : { id, method, params });
    return until((m) => m.id === id && m.method === undefined, `answer to ${method}`);
  };
  const identity = { email: 'dev@example.com', accountId: 'acct-1', userId: 'user-1', planType: 'plus' };

  console.log(`gatehouse demo: local backend at ${backend.url}, app-server pid ${child.pid}`);
  try {
    say('handshake');
    await request(1, 'initialize', {
      clientInfo: { name: 'gatehouse_demo', title: 'Gatehouse demo', version: '0.1.0' },
      capabilities: { experimentalApi: true },
    });
    say('the host logs in with tokens it owns (kept in memory only)');
    const firstToken = mintJwt(chatgptClaims({ ...identity, expiresInSec: 3600 }));
    await request(2, 'account/login/start', {
      type: 'chatgptAuthTokens',
      accessToken: firstToken,
      chatgptAccountId: 'acct-1',
    });
    await until((m) => m.method === 'account/updated', 'account/updated');
    await request(3, 'account/read', {});

    say('a turn, relayed to the backend over the Responses WebSocket');
    const thread = await request(4, 'thread/start', {});
    const threadId = (thread.result as { thread: { id: string } }).thread.id;
    await request(5, 'turn/start', { threadId, input: [{ type: 'text', text: 'Hello, Gatehouse!' }] });
    await until((m) => m.method === 'turn/completed', 'turn/completed');

    say('the backend revokes the token: the next turn gets a 401 and Gatehouse asks the host');
    backend.revokeBearer(firstToken);
    const thread2 = await request(6, 'thread/start', {});
    const threadId2 = (thread2.result as { thread: { id: string } }).thread.id;
    send({
      id: 7,
      method: 'turn/start',
      params: { threadId: threadId2, input: [{ type: 'text', text: 'Still there?' }] },
    });
    const refresh = await until(
      (m) => m.method === 'account/chatgptAuthTokens/refresh',
      'the refresh request',
    );
    say('the host answers with fresh tokens; the turn is retried with them');
    send({
      id: refresh.id,
      result: {
        accessToken: mintJwt(chatgptClaims({ ...identity, expiresInSec: 3600 })),
        chatgptAccountId: 'acct-1',
        chatgptPlanType: null,
      },
    });
    const done = await until((m) => m.method === 'turn/completed', 'turn/completed');
    const status = (done.params as { turn: { status: string } }).turn.status;

    say('logout, then stdin closes and the server exits');
    await request(8, 'account/logout');
    await until((m) => m.method === 'account/updated', 'account/updated');
    child.stdin.end();
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    const handshakes = backend.requests.filter((r) => r.route === 'responses.ws').length;
    console.log(
      `\n${stamp()}  app-server exited with status ${code}; second turn ${status}; ` +
        `${handshakes} Responses WebSocket handshakes seen by the backend`,
    );
    return code === 0 && status === 'completed' ? 0 : 1;
  } finally {
    child.kill();
    await backend.close();
    rmSync(codexHome, { recursive: true, force: true });
  }
}

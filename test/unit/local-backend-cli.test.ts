/**
 * `gatehouse local-backend` as a child process of the built CLI: one JSON line on stdout, a
 * backend that answers with the CA it names, the control API, exit 0 on SIGTERM and SIGINT.
 * Needs `npm run build` (npm test builds first).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LocalBackendControl, requestLocalBackend } from '../../src/backend/control-client.js';

const CLI = fileURLToPath(new URL('../../dist/src/cli/main.js', import.meta.url));
const built = existsSync(CLI);

interface Announcement {
  url: string;
  chatgptBaseUrl: string;
  issuer: string;
  caCertificate: string;
}

function startChild(args: string[]) {
  const child = spawn(process.execPath, [CLI, 'local-backend', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, GATEHOUSE_LOG: 'debug' },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const announced = new Promise<Announcement>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no JSON line within 10 s; stderr: ${stderr}`)), 10_000);
    const onData = () => {
      const newline = stdout.indexOf('\n');
      if (newline < 0) return;
      clearTimeout(timer);
      child.stdout.off('data', onData);
      resolve(JSON.parse(stdout.slice(0, newline)) as Announcement);
    };
    child.stdout.on('data', onData);
    void exited.then(() => reject(new Error(`exited before announcing; stderr: ${stderr}`)));
  });
  return { child, announced, exited, output: () => ({ stdout, stderr }) };
}

test(
  'prints one JSON line, serves with the CA it names, and exits 0 on SIGTERM',
  { skip: !built && 'run npm run build first' },
  async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'gh-lb-cli-'));
    const run = startChild(['--port', '0', '--state-dir', stateDir, '--response-delay-ms', '1']);
    try {
      const info = await run.announced;
      assert.deepEqual(Object.keys(info), ['url', 'chatgptBaseUrl', 'issuer', 'caCertificate']);
      assert.match(info.url, /^https:\/\/127\.0\.0\.1:\d+$/);
      assert.equal(info.chatgptBaseUrl, `${info.url}/backend-api`);
      assert.equal(info.issuer, info.url);
      assert.equal(info.caCertificate, join(stateDir, 'ca.pem'));
      assert.equal(statSync(info.caCertificate).mode & 0o777, 0o600);
      const ca = readFileSync(info.caCertificate, 'utf8');

      const check = await requestLocalBackend(`${info.chatgptBaseUrl}/wham/accounts/check`, {
        headers: { authorization: 'Bearer sk-secret-value', 'chatgpt-account-id': 'acct-1' },
        ca,
      });
      assert.equal(check.status, 200);

      const control = new LocalBackendControl(info.url, ca);
      await control.addFault({ route: 'accounts.check', action: { kind: 'status', status: 503 } });
      const faulted = await requestLocalBackend(`${info.chatgptBaseUrl}/wham/accounts/check`, {
        headers: { authorization: 'Bearer sk-secret-value' },
        ca,
      });
      assert.equal(faulted.status, 503);
      assert.deepEqual(
        (await control.requests()).map((r) => [r.route, r.status]),
        [
          ['accounts.check', 200],
          ['accounts.check', 503],
        ],
      );
    } finally {
      run.child.kill('SIGTERM');
    }
    assert.deepEqual(await run.exited, { code: 0, signal: null });
    const { stdout, stderr } = run.output();
    assert.equal(stdout.split('\n').filter(Boolean).length, 1, 'stdout holds only the JSON line');
    assert.match(stderr, /local backend listening/);
    assert.match(stderr, /"route":"accounts.check"/); // debug logs name the route...
    assert.ok(!stderr.includes('sk-secret-value'), 'tokens are never logged');
    assert.ok(existsSync(join(stateDir, 'ca.pem')), 'a given state dir is kept');
  },
);

test('SIGINT stops it too', { skip: !built && 'run npm run build first' }, async () => {
  const run = startChild([]);
  const info = await run.announced;
  assert.ok(existsSync(info.caCertificate));
  run.child.kill('SIGINT');
  assert.deepEqual(await run.exited, { code: 0, signal: null });
  assert.equal(existsSync(info.caCertificate), false, 'the temporary state dir is removed');
});

test(
  '--help documents every option; bad options exit 2 with the reason',
  { skip: !built && 'run npm run build first' },
  () => {
    const help = spawnSync(process.execPath, [CLI, 'local-backend', '--help'], { encoding: 'utf8' });
    assert.equal(help.status, 0);
    for (const option of [
      '--port',
      '--host',
      '--state-dir',
      '--response-delay-ms',
      'CODEX_CA_CERTIFICATE=',
      'chatgpt_base_url=',
    ]) {
      assert.ok(help.stdout.includes(option), option);
    }
    const top = spawnSync(process.execPath, [CLI, '--help'], { encoding: 'utf8' });
    assert.match(top.stdout, /local-backend/);

    const cases: [string[], RegExp][] = [
      [['--port', 'abc'], /--port must be an integer from 0 to 65535, not "abc"/],
      [['--response-delay-ms=-3'], /--response-delay-ms must be an integer/],
      [['--host', '0.0.0.0'], /loopback only/],
      [['--bogus'], /Unknown option '--bogus'/],
    ];
    for (const [args, message] of cases) {
      const bad = spawnSync(process.execPath, [CLI, 'local-backend', ...args], { encoding: 'utf8' });
      assert.equal(bad.status, 2, args.join(' '));
      assert.match(bad.stderr, message);
      assert.equal(bad.stdout, '');
    }
  },
);

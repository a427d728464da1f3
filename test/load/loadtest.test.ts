/**
 * `gatehouse loadtest` end to end: the built CLI as a child process, each run against its own
 * local backend and real brokers (children, or embedded), with its JSON report read back and
 * its HTML report opened in headless Chromium.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { LoadtestResults } from '../../src/loadtest/results.js';
import { CLI_PATH } from '../helpers/app-server-process.js';
import { dumpDom, requireChromium, screenshot } from '../helpers/chromium.js';
import { softhsmMissing } from '../helpers/softhsm.js';
import { skippedFor } from '../helpers/skip-loudly.js';

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-loadtest-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  results: LoadtestResults | undefined;
  json: string;
  html: string;
}

let runs = 0;
/** Runs `gatehouse loadtest` with reports in the test folder; bounded at 90 s. */
async function loadtest(...args: string[]): Promise<Run> {
  const name = `run-${++runs}`;
  const json = join(dir, `${name}.json`);
  const html = join(dir, `${name}.html`);
  const child = spawn(process.execPath, [CLI_PATH, 'loadtest', '--json', json, '--html', html, ...args], {
    env: { ...process.env, GATEHOUSE_LOG: 'warn' },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const killer = setTimeout(() => child.kill('SIGKILL'), 90_000);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  clearTimeout(killer);
  const results = existsSync(json) ? (JSON.parse(readFileSync(json, 'utf8')) as LoadtestResults) : undefined;
  return { code, stdout, stderr, results, json, html };
}

const op = (r: LoadtestResults, name: string) => r.operations.find((o) => o.name === name);
const explain = (run: Run) => `exit ${run.code}\n${run.stdout}\n${run.stderr.slice(-2000)}`;

describe('gatehouse loadtest', () => {
  test('--help documents the command; bad options exit 2 with the reason and print nothing on stdout', async () => {
    const help = await loadtest('--help');
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Usage: gatehouse loadtest \[options\]/);
    assert.match(help.stdout, /--faults SPEC/);
    const bad = await loadtest('--clients', 'lots');
    assert.equal(bad.code, 2);
    assert.equal(bad.stdout, '');
    assert.match(bad.stderr, /--clients must be a whole number from 1 to 100000, got 'lots'/);
    assert.equal(bad.results, undefined);
  });

  test('WebSocket clients with every fault: all handshakes, refreshes answered, no errors, reports written', async (t) => {
    const run = await loadtest(
      ...['-n', '12', '-d', '3s', '--ramp-up', '500ms', '--seed', '3'],
      ...['--faults', 'silent=30%,disconnect=40%,backend-401=25%'],
    );
    assert.equal(run.code, 0, explain(run));
    const r = run.results!;
    assert.equal(r.config.transport, 'websocket');
    assert.equal(r.totals.clientsStarted, 12);
    assert.equal(r.totals.errors, 0, JSON.stringify(r.errors));
    for (const step of ['initialize', 'authenticated']) {
      // Reconnecting clients handshake again, so at least one per client.
      assert.ok(op(r, step)!.completed >= 12, `${step}: ${op(r, step)!.completed}`);
    }
    assert.ok(op(r, 'attested')!.completed >= 1);
    assert.ok(op(r, 'account/read')!.completed > 0);
    assert.ok(op(r, 'turn')!.completed > 0);
    // Each fault shows: dropped connections, attestations left unanswered, refreshes answered.
    assert.ok(r.totals.disconnects > 0, 'no client disconnected');
    assert.ok(r.totals.serverRequests.byMethod['attestation/generate']!.ignored > 0, 'no silent client');
    assert.ok(
      r.totals.serverRequests.byMethod['account/chatgptAuthTokens/refresh']!.answered > 0,
      'no refresh',
    );
    assert.ok(r.broker.samples.length >= 2 && r.broker.samples.every((s) => s.rssBytes > 0));
    assert.equal(r.broker.pids.length, 1);
    assert.ok(r.timeline.length >= 3);
    // The table on stdout and the progress on stderr.
    assert.match(run.stdout, /^attested\s+step\s+\d+/m);
    assert.match(run.stdout, new RegExp(`report: ${run.html.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    assert.match(run.stderr, /\d+\/12 clients \| \d+ ok \d+ err/);
    // Tokens were minted for every login and refresh: none reaches the output or the reports.
    for (const text of [
      run.stdout,
      run.stderr,
      readFileSync(run.json, 'utf8'),
      readFileSync(run.html, 'utf8'),
    ]) {
      assert.doesNotMatch(text, /eyJ[\w-]+\.[\w-]+/);
    }

    requireChromium(t);
    const png = join(dir, 'faults-report.png');
    await screenshot(run.html, png);
    t.diagnostic(`screenshot of the report: ${png}`);
    assert.deepEqual([...readFileSync(png).subarray(1, 4)], [...Buffer.from('PNG')]);
    const dom = await dumpDom(run.html);
    const charts = [...dom.matchAll(/data-chart="([^"]+)"/g)].map((m) => m[1]);
    assert.ok(charts.length >= 4, `charts: ${charts.join(', ')}`);
    assert.match(dom, new RegExp(`data-charts-ready="${charts.length}"`));
    assert.ok((dom.match(/<canvas/g) ?? []).length >= charts.length, 'a chart without its canvas');
  });

  test('stdio: one app-server child per client, a request budget met exactly', async () => {
    const run = await loadtest(
      '-t',
      'stdio',
      '-n',
      '3',
      '--ramp-up',
      '0',
      '--requests',
      '90',
      '--mix',
      'account/read=1',
    );
    assert.equal(run.code, 0, explain(run));
    const r = run.results!;
    assert.equal(op(r, 'account/read')!.completed, 90);
    assert.equal(op(r, 'authenticated')!.completed, 3, 'every stdio client logs its own broker in');
    assert.equal(r.broker.pids.length, 3);
    assert.equal(new Set(r.broker.pids).size, 3);
  });

  test('in-process broker, open loop: every due operation runs once', async () => {
    const run = await loadtest(
      ...['-t', 'in-process', '-n', '4', '--ramp-up', '0', '--mode', 'open', '--rate', '300'],
      ...['--requests', '150', '--mix', 'account/read=3,turn=1'],
    );
    assert.equal(run.code, 0, explain(run));
    const r = run.results!;
    assert.equal(r.config.mode, 'open');
    assert.equal(op(r, 'account/read')!.completed + op(r, 'turn')!.completed, 150);
    assert.deepEqual(r.broker.pids, []);
    assert.ok(r.broker.samples.some((s) => s.heapUsedBytes !== null && s.heapUsedBytes > 0));
  });

  test('remote clients through the local backend relay', async () => {
    const run = await loadtest('-t', 'remote', '-n', '4', '--ramp-up', '0', '--requests', '60');
    assert.equal(run.code, 0, explain(run));
    const r = run.results!;
    assert.equal(op(r, 'initialize')!.completed, 4);
    assert.equal(op(r, 'attested')!.completed, 4);
    const work = r.operations.filter((o) => !o.step).reduce((n, o) => n + o.completed, 0);
    assert.equal(work, 60);
  });

  test('sign: device/key/sign with a SoftHSM2 key per client', async (t) => {
    if (skippedFor(t, softhsmMissing())) return;
    const run = await loadtest(
      '-t',
      'in-process',
      '-n',
      '2',
      '--ramp-up',
      '0',
      '--requests',
      '20',
      '--mix',
      'sign=1',
    );
    assert.equal(run.code, 0, explain(run));
    const r = run.results!;
    assert.equal(op(r, 'sign')!.completed, 20);
    assert.equal(op(r, 'device/key/create')!.completed, 2);
  });

  test('a run past its --timeout stops, says so and exits 1 with the reports written', async () => {
    const run = await loadtest(
      '-n',
      '2',
      '--ramp-up',
      '0',
      '-d',
      '60s',
      '--timeout',
      '3s',
      '--mix',
      'account/read=1',
    );
    assert.equal(run.code, 1, explain(run));
    assert.match(run.stderr, /the run hit its --timeout of 3000 ms/);
    assert.equal(run.results!.timedOut, true);
    assert.ok(existsSync(run.html));
  });
});

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  LOADTEST_OPTIONS,
  LOADTEST_USAGE,
  LoadtestUsageError,
  MAX_STDIO_CLIENTS,
  duration,
  parseLoadtestArgs,
  type LoadtestOptions,
} from '../../src/loadtest/options.js';

const NOW = new Date('2026-11-21T10:20:30.456Z');
const parse = (...args: string[]) => parseLoadtestArgs(args, NOW) as LoadtestOptions;
const refused = (args: string[], message: RegExp) =>
  assert.throws(
    () => parseLoadtestArgs(args, NOW),
    (e: unknown) => e instanceof LoadtestUsageError && message.test(e.message),
  );

describe('gatehouse loadtest options', () => {
  test('the help text documents every option, long and short', () => {
    for (const [name, spec] of Object.entries(LOADTEST_OPTIONS) as [string, { short?: string }][]) {
      assert.ok(LOADTEST_USAGE.includes(`--${name}`), `--${name} is not in the help`);
      if (spec.short !== undefined)
        assert.ok(LOADTEST_USAGE.includes(`-${spec.short}, --${name}`), `-${spec.short} is not in the help`);
    }
    assert.equal(parseLoadtestArgs(['--help']), 'help');
  });

  test('defaults: 100 WebSocket clients, 5 s ramp-up, 30 s closed loop, reports under loadtest-results', () => {
    const o = parse();
    assert.equal(o.transport, 'websocket');
    assert.equal(o.clients, 100);
    assert.equal(o.rampUpMs, 5000);
    assert.equal(o.durationMs, 30_000);
    assert.equal(o.requests, null);
    assert.equal(o.mode, 'closed');
    assert.equal(o.inFlight, 1);
    assert.deepEqual(o.mix, { 'account/read': 8, turn: 2 });
    assert.deepEqual(o.faults, {});
    assert.equal(o.timeoutMs, 5000 + 30_000 + 60_000);
    assert.equal(o.jsonPath, 'loadtest-results/loadtest-2026-11-21T10-20-30Z.json');
    assert.equal(o.htmlPath, 'loadtest-results/loadtest-2026-11-21T10-20-30Z.html');
    assert.equal(o.progress, true);
  });

  test('times, fractions, mixes and reports as given', () => {
    const o = parse(
      ...[
        '-n',
        '1000',
        '-t',
        'remote',
        '--ramp-up',
        '500ms',
        '--requests',
        '0',
        '--mode',
        'open',
        '--rate',
        '250.5',
      ],
      ...[
        '--mix',
        'account/read=1, sign=3',
        '--faults',
        'silent=5%,backend-401=0.01',
        '-c',
        'a=1',
        '-c',
        'b=2',
      ],
      ...[
        '--think',
        '2m',
        '--json',
        'r.json',
        '--html',
        '-',
        '--no-progress',
        '--seed',
        '7',
        '--warm-up',
        '100',
      ],
      ...['--node-arg=--cpu-prof', '--node-arg=--max-old-space-size=512'],
    );
    assert.equal(o.clients, 1000);
    assert.equal(o.transport, 'remote');
    assert.equal(o.rampUpMs, 500);
    assert.equal(o.requests, 0);
    assert.equal(o.durationMs, null);
    assert.equal(o.ratePerSec, 250.5);
    assert.deepEqual(o.mix, { 'account/read': 1, sign: 3 });
    assert.deepEqual(o.faults, { silent: 0.05, 'backend-401': 0.01 });
    assert.deepEqual(o.config, ['a=1', 'b=2']);
    assert.equal(o.thinkMs, 120_000);
    assert.equal(o.jsonPath, 'r.json');
    assert.equal(o.htmlPath, null);
    assert.equal(o.progress, false);
    assert.equal(o.seed, 7);
    assert.equal(o.warmUpClients, 100);
    assert.deepEqual(o.nodeArgs, ['--cpu-prof', '--max-old-space-size=512']);
    assert.equal(duration('--x', '12', 0), 12_000);
  });

  test('bad input is refused with the option named', () => {
    refused(['-n', '0'], /--clients must be a whole number from 1/);
    refused(['-n', 'many'], /--clients .* got 'many'/);
    refused(['-t', 'carrier-pigeon'], /--transport must be one of websocket, stdio, in-process, remote/);
    refused(['-t', 'stdio', '-n', String(MAX_STDIO_CLIENTS + 1)], /one app-server process per client/);
    refused(['-d', '10 minutes'], /--duration must be a time such as 500ms, 30s or 2m/);
    refused(['-d', '1s', '--requests', '5'], /not both/);
    refused(['--mode', 'open'], /--mode open needs --rate/);
    refused(['--rate', '5'], /--rate applies to --mode open only/);
    refused(['--mode', 'sideways'], /--mode must be closed or open/);
    refused(['--mix', 'account/read=0'], /at least one operation/);
    refused(['--mix', 'fly=1'], /'fly=1' is not NAME=VALUE with NAME one of account\/read, turn, sign/);
    refused(['--faults', 'silent=150%'], /--faults silent must be a fraction/);
    refused(['--faults', 'gremlins=1'], /NAME one of silent, disconnect, backend-401/);
    refused(['--max-error-rate', '2'], /--max-error-rate must be a fraction/);
    refused(['--frobnicate'], /Unknown option '--frobnicate'/);
    refused(['-n', '10', '--warm-up', '10'], /--warm-up must be a whole number from 0 to 9/);
  });
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, DEFAULT_SETTINGS, loadConfig, parseOverride } from '../../src/config/config.js';

const home = () => mkdtempSync(join(tmpdir(), 'gh-config-'));

test('-c values are TOML, and a value that is not TOML is a string (as in codex)', () => {
  assert.deepEqual(parseOverride('model="o3"'), ['model', 'o3']);
  assert.deepEqual(parseOverride('gatehouse.max_line_bytes=2048'), ['gatehouse.max_line_bytes', 2048]);
  assert.deepEqual(parseOverride('features.x=true'), ['features.x', true]);
  assert.deepEqual(parseOverride('chatgpt_base_url=http://127.0.0.1:1/backend-api'), [
    'chatgpt_base_url',
    'http://127.0.0.1:1/backend-api',
  ]);
  assert.deepEqual(parseOverride('list=["a", "b"]'), ['list', ['a', 'b']]);
  assert.throws(() => parseOverride('novalue'), ConfigError);
  assert.throws(() => parseOverride('=x'), ConfigError);
});

test('config.toml then overrides; codex keys Gatehouse does not use are accepted and listed', () => {
  const dir = home();
  writeFileSync(
    join(dir, 'config.toml'),
    'model = "gpt"\n[gatehouse]\nmailbox_capacity = 10\nmax_line_bytes = 4096\n',
  );
  const config = loadConfig({
    env: { CODEX_HOME: dir },
    overrides: ['gatehouse.max_line_bytes=8192', 'openai_base_url="http://x"'],
  });
  assert.equal(config.codexHome, dir);
  assert.deepEqual(config.settings, { ...DEFAULT_SETTINGS, mailboxCapacity: 10, maxLineBytes: 8192 });
  assert.deepEqual(config.ignoredKeys, ['model']);
  assert.equal(config.codex.openaiBaseUrl, 'http://x');
});

test('Gatehouse settings are checked strictly with clear messages', () => {
  const env = { CODEX_HOME: home() };
  assert.throws(
    () => loadConfig({ env, overrides: ['gatehouse.bogus=1'] }),
    /unknown setting gatehouse\.bogus/,
  );
  assert.throws(
    () => loadConfig({ env, overrides: ['gatehouse.max_line_bytes=12'] }),
    /gatehouse\.max_line_bytes must be an integer from 1024/,
  );
  assert.throws(
    () => loadConfig({ env, overrides: ['gatehouse.mailbox_capacity="many"'] }),
    /must be an integer/,
  );
});

test('CODEX_HOME: an explicit path must exist; a broken config.toml names the file', () => {
  assert.throws(
    () => loadConfig({ env: { CODEX_HOME: '/nonexistent/codex-home' } }),
    /CODEX_HOME points to "\/nonexistent\/codex-home"/,
  );
  const dir = home();
  writeFileSync(join(dir, 'config.toml'), 'model = \n');
  assert.throws(
    () => loadConfig({ env: { CODEX_HOME: dir } }),
    (e) => e instanceof ConfigError && e.message.includes(join(dir, 'config.toml')),
  );
});

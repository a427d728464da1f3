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

test('device-key settings: auto by default, TCTIs and paths accepted, other forms refused', () => {
  const env = { CODEX_HOME: home() };
  const defaults = loadConfig({ env }).settings;
  assert.equal(defaults.deviceKeyTpm, 'auto');
  assert.equal(defaults.deviceKeyPkcs11Module, 'auto');
  assert.equal(defaults.deviceKeyPkcs11Token, 'gatehouse');
  const set = loadConfig({
    env,
    overrides: [
      'gatehouse.device_key_tpm="swtpm:host=127.0.0.1,port=2321"',
      'gatehouse.device_key_pkcs11_module="/opt/hsm/lib.so"',
      'gatehouse.device_key_pkcs11_pin_file="/etc/gatehouse/pins.json"',
    ],
  }).settings;
  assert.equal(set.deviceKeyTpm, 'swtpm:host=127.0.0.1,port=2321');
  assert.equal(set.deviceKeyPkcs11Module, '/opt/hsm/lib.so');
  assert.equal(set.deviceKeyPkcs11PinFile, '/etc/gatehouse/pins.json');
  assert.throws(
    () => loadConfig({ env, overrides: ['gatehouse.device_key_tpm="mssim:host=x"'] }),
    /gatehouse\.device_key_tpm must be auto, off, or a TCTI/,
  );
  assert.throws(
    () => loadConfig({ env, overrides: ['gatehouse.device_key_pkcs11_module="lib.so"'] }),
    /must be auto, off, or the absolute path of a PKCS#11 module/,
  );
  assert.throws(
    () => loadConfig({ env, overrides: [`gatehouse.device_key_pkcs11_token="${'x'.repeat(33)}"`] }),
    /a token label of 1 to 32 printable ASCII characters/,
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

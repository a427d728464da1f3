import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_SETTINGS } from '../../src/config/config.js';
import { chooseProviders, prepareSofthsm } from '../../src/device-key/provider-choice.js';

const home = '/codex-home';

test('the TPM: $TPM2TOOLS_TCTI first, a TCTI Gatehouse cannot speak is noted and skipped, off is off', () => {
  const fromEnv = chooseProviders(DEFAULT_SETTINGS, home, { TPM2TOOLS_TCTI: 'swtpm:host=127.0.0.1,port=9' });
  assert.deepEqual(fromEnv.configs.hardware_tpm, {
    kind: 'tpm',
    options: { tcti: 'swtpm:host=127.0.0.1,port=9', stateDir: join(home, 'device-keys', 'tpm') },
  });
  const tabrmd = chooseProviders(DEFAULT_SETTINGS, home, { TPM2TOOLS_TCTI: 'tabrmd:bus_type=session' });
  assert.ok(tabrmd.notes.some((n) => n.includes('tabrmd:bus_type=session') && n.includes('ignored')));
  if (!existsSync('/dev/tpmrm0')) assert.equal(tabrmd.configs.hardware_tpm.kind, 'unsupported');
  const off = chooseProviders({ ...DEFAULT_SETTINGS, deviceKeyTpm: 'off' }, home, {
    TPM2TOOLS_TCTI: 'swtpm:x',
  });
  assert.equal(off.configs.hardware_tpm.kind, 'unsupported');
  assert.equal(off.configs.hardware_secure_enclave.kind, 'unsupported');
});

test('PKCS#11: an explicit module and PIN file are used as given; off is off', () => {
  const chosen = chooseProviders(
    { ...DEFAULT_SETTINGS, deviceKeyPkcs11Module: '/opt/hsm.so', deviceKeyPkcs11PinFile: '/etc/pins.json' },
    home,
    {},
  );
  assert.deepEqual(chosen.configs.os_protected_nonextractable, {
    kind: 'pkcs11',
    options: { module: '/opt/hsm.so', tokenLabel: 'gatehouse', pinFile: '/etc/pins.json' },
  });
  const off = chooseProviders({ ...DEFAULT_SETTINGS, deviceKeyPkcs11Module: 'off' }, home, {});
  assert.equal(off.configs.os_protected_nonextractable.kind, 'unsupported');
});

test('SoftHSM2 without SOFTHSM2_CONF gets a private configuration under the state folder', () => {
  const stateDir = join(mkdtempSync(join(tmpdir(), 'gatehouse-choice-')), 'device-keys');
  const config = {
    kind: 'pkcs11',
    options: { module: '/usr/lib/softhsm/libsofthsm2.so', tokenLabel: 't', pinFile: '/p' },
  } as const;
  const env: NodeJS.ProcessEnv = {};
  prepareSofthsm(config, stateDir, env);
  assert.equal(env.SOFTHSM2_CONF, join(stateDir, 'softhsm2', 'softhsm2.conf'));
  assert.match(
    readFileSync(env.SOFTHSM2_CONF, 'utf8'),
    new RegExp(`directories.tokendir = ${join(stateDir, 'softhsm2', 'tokens')}`),
  );
  assert.equal(statSync(join(stateDir, 'softhsm2', 'tokens')).mode & 0o777, 0o700);
  assert.equal(statSync(env.SOFTHSM2_CONF).mode & 0o777, 0o600);
  const hosts: NodeJS.ProcessEnv = { SOFTHSM2_CONF: '/etc/host.conf' };
  prepareSofthsm(config, stateDir, hosts);
  assert.equal(hosts.SOFTHSM2_CONF, '/etc/host.conf', "the host's own configuration is kept");
});

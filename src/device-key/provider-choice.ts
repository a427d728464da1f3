/**
 * Which providers this machine has, decided once at start-up from the settings and what is
 * installed (zero configuration where a provider exists): the TPM from `$TPM2TOOLS_TCTI` (as
 * tpm2-tools reads it) or the kernel's resource manager `/dev/tpmrm0`; the PKCS#11 module at
 * SoftHSM2's standard paths. Nothing is opened here: the key-store workers do that on first use.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { GatehouseSettings } from '../config/config.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { platformError } from './errors.js';
import type { DeviceKeyProtectionClass, ProviderConfig } from './provider.js';

export const TPM_RESOURCE_MANAGER = '/dev/tpmrm0';

export const SOFTHSM2_MODULES = [
  '/usr/lib/softhsm/libsofthsm2.so',
  '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/local/lib/softhsm/libsofthsm2.so',
];

/** TCTI forms the TPM transport speaks (src/device-key/tpm/transport.ts). */
const SUPPORTED_TCTI = /^(device:\/\S+|swtpm:\S+)$/;

export interface ProviderChoice {
  /** One config per protection class; classes with no provider get codex's unsupported one. */
  configs: Record<DeviceKeyProtectionClass, ProviderConfig>;
  /** Where Gatehouse keeps device-key state: TPM blobs, SoftHSM2 tokens, PIN files. */
  stateDir: string;
  /** What was found and why, for the start-up log. */
  notes: string[];
}

export function chooseProviders(
  settings: GatehouseSettings,
  codexHome: string,
  env: NodeJS.ProcessEnv,
): ProviderChoice {
  const stateDir = join(codexHome, 'device-keys');
  const notes: string[] = [];
  const configs: Record<DeviceKeyProtectionClass, ProviderConfig> = {
    hardware_secure_enclave: { kind: 'unsupported', protectionClass: 'hardware_secure_enclave' },
    hardware_tpm: { kind: 'unsupported', protectionClass: 'hardware_tpm' },
    os_protected_nonextractable: { kind: 'unsupported', protectionClass: 'os_protected_nonextractable' },
  };
  const tcti = findTpm(settings.deviceKeyTpm, env, notes);
  if (tcti) configs.hardware_tpm = { kind: 'tpm', options: { tcti, stateDir: join(stateDir, 'tpm') } };
  const module = findPkcs11Module(settings.deviceKeyPkcs11Module, notes);
  if (module) {
    configs.os_protected_nonextractable = {
      kind: 'pkcs11',
      options: {
        module,
        tokenLabel: settings.deviceKeyPkcs11Token,
        pinFile:
          settings.deviceKeyPkcs11PinFile === 'auto'
            ? join(stateDir, 'pkcs11-pins.json')
            : settings.deviceKeyPkcs11PinFile,
      },
    };
  }
  return { configs, stateDir, notes };
}

function findTpm(setting: string, env: NodeJS.ProcessEnv, notes: string[]): string | undefined {
  if (setting === 'off') return undefined;
  if (setting !== 'auto') return setting;
  const fromEnv = env.TPM2TOOLS_TCTI;
  if (fromEnv) {
    if (SUPPORTED_TCTI.test(fromEnv)) return fromEnv;
    notes.push(`TPM2TOOLS_TCTI=${fromEnv} is not a TCTI Gatehouse speaks (device:… or swtpm:…); ignored`);
  }
  if (existsSync(TPM_RESOURCE_MANAGER)) return `device:${TPM_RESOURCE_MANAGER}`;
  notes.push(`no TPM: ${TPM_RESOURCE_MANAGER} is absent and TPM2TOOLS_TCTI is not set`);
  return undefined;
}

function findPkcs11Module(setting: string, notes: string[]): string | undefined {
  if (setting === 'off') return undefined;
  if (setting !== 'auto') return setting;
  const found = SOFTHSM2_MODULES.find((path) => existsSync(path));
  if (!found) notes.push('no PKCS#11 module: SoftHSM2 is not installed');
  return found;
}

/**
 * SoftHSM2 reads its configuration file from `SOFTHSM2_CONF` when the module initialises. When
 * the host has not chosen one, Gatehouse keeps its tokens under CODEX_HOME rather than in the
 * system token folder (which needs root): it writes a configuration there and points the variable
 * at it. This must run on the main thread, before any worker loads the module: a worker's
 * `process.env` is a private copy that the C library never sees.
 */
export function prepareSofthsm(config: ProviderConfig, stateDir: string, env: NodeJS.ProcessEnv): void {
  if (config.kind !== 'pkcs11' || basename(config.options.module) !== 'libsofthsm2.so') return;
  if (env.SOFTHSM2_CONF) return;
  const dir = join(stateDir, 'softhsm2');
  const tokens = join(dir, 'tokens');
  const conf = join(dir, 'softhsm2.conf');
  try {
    // One level at a time: a recursive mkdir on a read-only file system reports ENOENT, not EROFS.
    for (const folder of [stateDir, dir, tokens]) mkdirPrivate(folder);
    const text = `# Written by Gatehouse: SoftHSM2 tokens for device keys.\ndirectories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`;
    // Atomic, so a full disk or a crash never leaves a truncated file SoftHSM2 would misread;
    // and only when it changed, so a full disk does not stop keys that already exist.
    if (readIfPresent(conf) !== text) writeFileAtomic(conf, text);
  } catch (e) {
    // A read-only or full CODEX_HOME: said as such, not as a bare "Internal error".
    throw platformError(
      `cannot prepare the SoftHSM2 token folder ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  env.SOFTHSM2_CONF = conf;
}

function mkdirPrivate(folder: string): void {
  try {
    mkdirSync(folder, { mode: 0o700 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
}

function readIfPresent(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

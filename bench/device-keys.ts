/**
 * `device/key/sign` end to end over stdio, per provider, next to the ceiling it is measured
 * against in the same run: raw `crypto.sign` (ECDSA P-256, a KeyObject) on every core at once.
 *
 * Each provider gets its own `gatehouse app-server` child and CODEX_HOME: SoftHSM2 with zero
 * configuration (policy allow_os_protected_nonextractable), and swtpm (hardware_only) when it is
 * installed. Every answer is checked for a signature over the exact bytes of its request, and a
 * sample is verified against the key's public key.
 */
import { createHash, generateKeyPairSync, sign, verify } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { LineChild, withTimeout } from './line-child.js';
import { percentile, sortedCopy } from './stats.js';
import { startSwtpm, swtpmMissing } from '../test/helpers/swtpm.js';
import { createPkcs11Provider } from '../src/device-key/pkcs11/pkcs11-provider.js';
import { prepareSofthsm, SOFTHSM2_MODULES } from '../src/device-key/provider-choice.js';

const gatehouseCli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

export interface SignLoad {
  provider: string;
  requests: number;
  inFlight: number;
  reqPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

export interface DeviceKeyReport {
  ceiling: { threads: number; signPerSec: number };
  /** SoftHSM2's own rate: the provider's signDigest called in a loop on this thread. */
  softhsmDirect: { signPerSec: number } | undefined;
  providers: (SignLoad & { overCeiling: number })[];
  skipped: string[];
}

export interface DeviceKeyBenchOptions {
  /** Sign requests per provider and round. */
  requests: number;
  inFlight: number;
  /** Seconds the ceiling measurement signs on each core. */
  ceilingSeconds: number;
  /** Node flags for the gatehouse children (`--cpu-prof`). */
  nodeArgs: string[];
  progress(message: string): void;
}

/** A payload of the connection type, valid for the next five minutes, with the message index. */
function signRequest(id: number, keyId: string): string {
  const now = Math.floor(Date.now() / 1000);
  const payload = {
    type: 'remoteControlClientConnection',
    nonce: Buffer.alloc(32, id % 251).toString('base64url'),
    audience: 'remote_control_client_websocket',
    sessionId: `wssess_${id}`,
    targetOrigin: 'https://chatgpt.com',
    targetPath: '/api/codex/remote/control/client',
    accountUserId: 'bench-user',
    clientId: 'bench-client',
    tokenSha256Base64url: '47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU',
    tokenExpiresAt: now + 300,
    scopes: ['remote_control_controller_websocket'],
  };
  return JSON.stringify({ id, method: 'device/key/sign', params: { keyId, payload } });
}

/** Raw ECDSA P-256 signing on `threads` worker threads at once, each with its own key. */
export async function signCeiling(threads: number, seconds: number): Promise<number> {
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    const { generateKeyPairSync, sign } = require('node:crypto');
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const message = Buffer.alloc(560, 7);
    for (let i = 0; i < 200; i++) sign('sha256', message, { key: privateKey, dsaEncoding: 'der' });
    parentPort.once('message', () => {
      const end = performance.now() + workerData.ms;
      let n = 0;
      while (performance.now() < end) { sign('sha256', message, { key: privateKey, dsaEncoding: 'der' }); n++; }
      parentPort.postMessage(n);
    });
    parentPort.postMessage('ready');`;
  const workers = Array.from(
    { length: threads },
    () => new Worker(code, { eval: true, workerData: { ms: seconds * 1000 } }),
  );
  try {
    await Promise.all(workers.map((w) => new Promise((resolve) => w.once('message', resolve))));
    const counts = await Promise.all(
      workers.map((w) => {
        const done = new Promise<number>((resolve) => w.once('message', resolve));
        w.postMessage('go');
        return done;
      }),
    );
    return counts.reduce((a, b) => a + b, 0) / seconds;
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

/**
 * SoftHSM2 signing with nothing around it: the provider in this process, one thread, one key.
 * The bench process never loads the module otherwise, so its SOFTHSM2_CONF is set here.
 */
async function softhsmDirect(seconds: number): Promise<number | undefined> {
  const module = SOFTHSM2_MODULES.find((path) => existsSync(path));
  if (!module) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-bench-softhsm-'));
  const hostConf = process.env.SOFTHSM2_CONF;
  delete process.env.SOFTHSM2_CONF;
  try {
    prepareSofthsm(
      { kind: 'pkcs11', options: { module, tokenLabel: 'bench', pinFile: '' } },
      dir,
      process.env,
    );
    const provider = await createPkcs11Provider({
      module,
      tokenLabel: 'bench',
      pinFile: join(dir, 'pins.json'),
    });
    const keyId = 'dk_osn_bench';
    await provider.create(keyId);
    const digest = createHash('sha256').update('bench').digest();
    for (let i = 0; i < 200; i++) await provider.signDigest(keyId, digest);
    const end = performance.now() + seconds * 1000;
    let n = 0;
    while (performance.now() < end) {
      await provider.signDigest(keyId, digest);
      n++;
    }
    await provider.close();
    return n / seconds;
  } finally {
    // The gatehouse children inherit this environment: they get the host's configuration back.
    if (hostConf === undefined) delete process.env.SOFTHSM2_CONF;
    else process.env.SOFTHSM2_CONF = hostConf;
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Sends one request and waits for its answer (set-up calls: initialize, create). */
function call(child: LineChild, line: string, id: number): Promise<Record<string, unknown>> {
  return withTimeout(
    new Promise((resolve) => {
      child.onLine = (text) => {
        const msg = JSON.parse(text) as Record<string, unknown>;
        if (msg.id === id) resolve(msg);
      };
      child.write(line + '\n');
    }),
    30_000,
    () => child.failure(`no answer to request ${id} within 30 s`),
  );
}

async function signLoad(
  provider: string,
  child: LineChild,
  keyId: string,
  spki: Buffer,
  requests: number,
  inFlight: number,
): Promise<SignLoad> {
  const started = new Float64Array(requests);
  const latency = new Float64Array(requests);
  let sent = 0;
  let received = 0;
  const base = 1_000_000;
  const t0 = performance.now();
  const finished = new Promise<void>((resolve, reject) => {
    let batch: string[] = [];
    const enqueue = () => {
      const i = sent++;
      started[i] = performance.now();
      batch.push(signRequest(base + i, keyId));
    };
    const flush = () => {
      if (batch.length > 0) child.write(batch.join('\n') + '\n');
      batch = [];
    };
    child.onLine = (text) => {
      const msg = JSON.parse(text) as { id: number; result?: Record<string, string>; error?: unknown };
      const i = msg.id - base;
      if (!msg.result?.signatureDerBase64) {
        reject(child.failure(`request ${msg.id} failed: ${JSON.stringify(msg.error)}`));
        return;
      }
      latency[i] = performance.now() - started[i]!;
      // A sample is verified the way a relying party would; all carry the request's own bytes.
      const signed = Buffer.from(msg.result.signedPayloadBase64!, 'base64');
      if (!signed.includes(`"sessionId":"wssess_${msg.id}"`))
        reject(child.failure(`answer ${msg.id} signs other bytes`));
      if (i % 997 === 0) {
        const ok = verify(
          'sha256',
          signed,
          { key: spki, format: 'der', type: 'spki', dsaEncoding: 'der' },
          Buffer.from(msg.result.signatureDerBase64, 'base64'),
        );
        if (!ok) reject(child.failure(`signature ${msg.id} does not verify`));
      }
      if (++received === requests) resolve();
      else if (sent < requests) enqueue();
    };
    child.onChunkEnd = flush;
    while (sent < Math.min(inFlight, requests)) enqueue();
    flush();
  });
  await withTimeout(finished, Math.max(60_000, requests * 5), () =>
    child.failure(`sign load stalled at ${received}/${requests}`),
  );
  child.onChunkEnd = () => {};
  const elapsed = performance.now() - t0;
  const sorted = sortedCopy(latency);
  return {
    provider,
    requests,
    inFlight,
    reqPerSec: (requests / elapsed) * 1000,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
  };
}

async function benchProvider(
  provider: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  policy: string,
  options: DeviceKeyBenchOptions,
): Promise<SignLoad> {
  const home = mkdtempSync(join(tmpdir(), 'gatehouse-bench-dk-'));
  const child = new LineChild({
    label: `gatehouse (${provider})`,
    args: [...options.nodeArgs, gatehouseCli, 'app-server', ...args],
    env: { ...process.env, ...env, CODEX_HOME: home, GATEHOUSE_LOG: 'warn' },
  });
  try {
    await call(
      child,
      JSON.stringify({
        id: 1,
        method: 'initialize',
        params: { clientInfo: { name: 'bench', version: '1' } },
      }),
      1,
    );
    const created = await call(
      child,
      JSON.stringify({
        id: 2,
        method: 'device/key/create',
        params: { accountUserId: 'bench-user', clientId: 'bench-client', protectionPolicy: policy },
      }),
      2,
    );
    const key = created.result as { keyId: string; publicKeySpkiDerBase64: string } | undefined;
    if (!key) throw child.failure(`device/key/create failed: ${JSON.stringify(created.error)}`);
    const spki = Buffer.from(key.publicKeySpkiDerBase64, 'base64');
    options.progress(`${provider}: warm-up, then ${options.requests} signs at ${options.inFlight} in flight`);
    await signLoad(provider, child, key.keyId, spki, Math.min(2000, options.requests), options.inFlight);
    return await signLoad(provider, child, key.keyId, spki, options.requests, options.inFlight);
  } finally {
    await child.close().catch(() => child.kill());
    rmSync(home, { recursive: true, force: true });
  }
}

export async function runDeviceKeyBench(options: DeviceKeyBenchOptions): Promise<DeviceKeyReport> {
  const threads = availableParallelism();
  options.progress(`ceiling: raw crypto.sign on ${threads} threads for ${options.ceilingSeconds} s`);
  // The warm-up key generation above is per worker; this one only checks the API works here.
  sign('sha256', Buffer.alloc(1), generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey);
  const ceiling = await signCeiling(threads, options.ceilingSeconds);
  options.progress(`SoftHSM2 provider called directly on one thread for ${options.ceilingSeconds} s`);
  const direct = await softhsmDirect(options.ceilingSeconds);
  const loads: SignLoad[] = [];
  const skipped: string[] = [];
  loads.push(
    await benchProvider(
      'SoftHSM2 (os_protected_nonextractable)',
      ['-c', 'gatehouse.device_key_tpm=off'],
      {},
      'allow_os_protected_nonextractable',
      options,
    ),
  );
  const noSwtpm = swtpmMissing();
  if (noSwtpm) {
    skipped.push(`swtpm: ${noSwtpm}`);
  } else {
    const tpm = await startSwtpm();
    try {
      loads.push(
        await benchProvider(
          'swtpm (hardware_tpm)',
          ['-c', 'gatehouse.device_key_pkcs11_module=off'],
          { TPM2TOOLS_TCTI: tpm.tcti },
          'hardware_only',
          {
            ...options,
            requests: Math.min(options.requests, 3000),
          },
        ),
      );
    } finally {
      await tpm.dispose();
    }
  }
  return {
    ceiling: { threads, signPerSec: ceiling },
    softhsmDirect: direct === undefined ? undefined : { signPerSec: direct },
    providers: loads.map((l) => ({ ...l, overCeiling: l.reqPerSec / ceiling })),
    skipped,
  };
}

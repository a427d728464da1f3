/**
 * `device/key/sign` end to end over stdio, per provider, next to the ceilings measured at the
 * top of the same run: pipelined, raw `crypto.sign` (ECDSA P-256, a KeyObject) on every core at
 * once (`signCeiling`, which the run's ceilings call); at 1 in flight, the floor of a request that
 * crosses stdio and one worker hop and signs once.
 *
 * Each provider gets its own `gatehouse app-server` child and CODEX_HOME: SoftHSM2 with zero
 * configuration (policy allow_os_protected_nonextractable), and swtpm (hardware_only) when it is
 * installed. Every answer is checked for a signature over the exact bytes of its request, and a
 * sample is verified against the key's public key.
 */
import { createHash, verify } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { setupCall } from './gatehouse-child.js';
import { LineChild } from './line-child.js';
import { int, ms, ratio, row } from './report.js';
import { measureLoop, type Answer, type Connection, type LoadResult } from './stdio-load.js';
import { startSwtpm, swtpmMissing } from '../test/helpers/swtpm.js';
import { createPkcs11Provider } from '../src/device-key/pkcs11/pkcs11-provider.js';
import { prepareSofthsm, SOFTHSM2_MODULES } from '../src/device-key/provider-choice.js';

const gatehouseCli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

/** Raw `crypto.sign` on every core at once: the ceiling of this part, measured by the run's ceilings. */
export interface SignCeiling {
  threads: number;
  signPerSec: number;
}

export interface ProviderReport {
  provider: string;
  pipelined: LoadResult;
  /** 1 in flight. */
  rtt: LoadResult;
  /** Pipelined sign/s over the raw crypto.sign ceiling. */
  overSignCeiling: number;
  /** RTT p50 over the 1-in-flight floor. */
  overRttFloor: number;
}

type ProviderLoads = Pick<ProviderReport, 'provider' | 'pipelined' | 'rtt'>;

export interface DeviceKeyReport {
  ceiling: SignCeiling;
  /**
   * The least a 1-in-flight sign can take: the raw stdio echo's RTT p50, the raw worker's RTT p50
   * (the key store lives in a worker thread) and one raw signature on one core.
   */
  rttFloorMs: number;
  /** SoftHSM2's own rate: the provider's signDigest called in a loop on this thread. */
  softhsmDirect: { signPerSec: number } | undefined;
  providers: ProviderReport[];
  skipped: string[];
}

export interface DeviceKeyBenchOptions {
  /** Sign requests per provider (SoftHSM2), and for swtpm, which signs about 1,000/s. */
  requests: number;
  tpmRequests: number;
  inFlight: number;
  /** Sequential signs per provider (1 in flight). */
  rttRequests: number;
  ceiling: SignCeiling;
  /** RTT p50s of the raw stdio echo and of the raw worker, from the run's ceilings. */
  echoRttMs: number;
  workerRttMs: number;
  /** Seconds SoftHSM2 is called directly, in this process. */
  directSeconds: number;
  /** Node flags for the gatehouse children (`--cpu-prof`). */
  nodeArgs: string[];
  progress(message: string): void;
}

/** Request ids of the sign loads start here, past the set-up calls. */
const FIRST_LOAD_ID = 1000;

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

/** Raw ECDSA P-256 signing on `threads` worker threads at once, each with its own key: signatures/s. */
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
  // A worker that fails (no P-256 in this OpenSSL, say) fails the run rather than hanging it.
  const next = <T>(w: Worker) =>
    new Promise<T>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
  try {
    await Promise.all(workers.map((w) => next(w)));
    const counts = await Promise.all(
      workers.map((w) => {
        const done = next<number>(w);
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

/**
 * Why `m` is not a signature over its own request's bytes, or undefined when it is. A sample is
 * also verified against the key, the way a relying party would.
 */
function signProblem(m: Answer, spki: Buffer): string | undefined {
  const result = m.result as Record<string, string | undefined> | undefined;
  if (!result?.signatureDerBase64 || !result.signedPayloadBase64)
    return `request ${m.id} failed: ${JSON.stringify(m.error)}`;
  const signed = Buffer.from(result.signedPayloadBase64, 'base64');
  if (!signed.includes(`"sessionId":"wssess_${m.id}"`)) return `answer ${m.id} signs other bytes`;
  if (m.id % 997 === 0) {
    const key = { key: spki, format: 'der', type: 'spki', dsaEncoding: 'der' } as const;
    if (!verify('sha256', signed, key, Buffer.from(result.signatureDerBase64, 'base64')))
      return `signature ${m.id} does not verify`;
  }
  return undefined;
}

function signLoad(
  connection: Connection,
  keyId: string,
  spki: Buffer,
  requests: number,
  inFlight: number,
): Promise<LoadResult> {
  const loop = {
    request: (id: number) => signRequest(id, keyId),
    check: (m: Answer) => signProblem(m, spki),
  };
  // A TPM serves one command at a time: the deadline allows 200 signatures/s.
  return measureLoop(connection, loop, requests, inFlight, Math.max(60_000, requests * 5));
}

async function benchProvider(
  provider: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  policy: string,
  requests: number,
  options: DeviceKeyBenchOptions,
): Promise<ProviderLoads> {
  const home = mkdtempSync(join(tmpdir(), 'gatehouse-bench-dk-'));
  const child = new LineChild({
    label: `gatehouse (${provider})`,
    args: [...options.nodeArgs, gatehouseCli, 'app-server', ...args],
    env: { ...process.env, ...env, CODEX_HOME: home, GATEHOUSE_LOG: 'warn' },
  });
  try {
    await setupCall(child, 1, 'initialize', { clientInfo: { name: 'bench', version: '1' } });
    const created = await setupCall(child, 2, 'device/key/create', {
      accountUserId: 'bench-user',
      clientId: 'bench-client',
      protectionPolicy: policy,
    });
    const key = created.result as { keyId: string; publicKeySpkiDerBase64: string } | undefined;
    if (!key) throw child.failure('device/key/create answered without a key');
    const spki = Buffer.from(key.publicKeySpkiDerBase64, 'base64');
    const connection: Connection = { child, nextId: FIRST_LOAD_ID };
    const rttRequests = Math.min(options.rttRequests, requests);
    options.progress(
      `${provider}: warm-up, then ${requests} signs at ${options.inFlight} in flight and ${rttRequests} at 1`,
    );
    await signLoad(connection, key.keyId, spki, Math.min(2000, requests), options.inFlight);
    const pipelined = await signLoad(connection, key.keyId, spki, requests, options.inFlight);
    const rtt = await signLoad(connection, key.keyId, spki, rttRequests, 1);
    return { provider, pipelined, rtt };
  } finally {
    await child.close().catch(() => child.kill());
    rmSync(home, { recursive: true, force: true });
  }
}

export async function runDeviceKeyBench(options: DeviceKeyBenchOptions): Promise<DeviceKeyReport> {
  const { ceiling } = options;
  options.progress(`SoftHSM2 provider called directly on one thread for ${options.directSeconds} s`);
  const direct = await softhsmDirect(options.directSeconds);
  const loads: ProviderLoads[] = [];
  const skipped: string[] = [];
  loads.push(
    await benchProvider(
      'SoftHSM2 (os_protected_nonextractable)',
      ['-c', 'gatehouse.device_key_tpm=off'],
      {},
      'allow_os_protected_nonextractable',
      options.requests,
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
          options.tpmRequests,
          options,
        ),
      );
    } finally {
      await tpm.dispose();
    }
  }
  const rttFloorMs = options.echoRttMs + options.workerRttMs + (ceiling.threads / ceiling.signPerSec) * 1000;
  return {
    ceiling,
    rttFloorMs,
    softhsmDirect: direct === undefined ? undefined : { signPerSec: direct },
    providers: loads.map((l) => ({
      ...l,
      overSignCeiling: l.pipelined.reqPerSec / ceiling.signPerSec,
      overRttFloor: l.rtt.p50Ms / rttFloorMs,
    })),
    skipped,
  };
}

export function printDeviceKeyReport(report: DeviceKeyReport, inFlight: number): void {
  const { ceiling } = report;
  const w = [46, 11, 9, 9, 11];
  console.log('');
  console.log(
    row([`device/key/sign over stdio, ${inFlight} in flight`, 'req/s', 'p50 ms', 'p99 ms', 'x ceiling'], w),
  );
  console.log(
    row(
      [`  ceiling: raw crypto.sign, ${ceiling.threads} threads`, int(ceiling.signPerSec), '', '', ratio(1)],
      w,
    ),
  );
  if (report.softhsmDirect) {
    const direct = report.softhsmDirect.signPerSec;
    console.log(
      row(
        [
          '  SoftHSM2 C_Sign alone, 1 thread, in-process',
          int(direct),
          '',
          '',
          ratio(direct / ceiling.signPerSec),
        ],
        w,
      ),
    );
  }
  for (const p of report.providers) {
    const x = p.pipelined;
    console.log(
      row([`  ${p.provider}`, int(x.reqPerSec), ms(x.p50Ms), ms(x.p99Ms), ratio(p.overSignCeiling)], w),
    );
  }
  console.log('');
  console.log(row(['device/key/sign, 1 in flight', 'req/s', 'p50 ms', 'p99 ms', 'x floor'], w));
  console.log(
    row(['  floor: echo RTT + worker RTT + 1 raw sign', '', ms(report.rttFloorMs), '', ratio(1)], w),
  );
  for (const p of report.providers) {
    const x = p.rtt;
    console.log(
      row([`  ${p.provider}`, int(x.reqPerSec), ms(x.p50Ms), ms(x.p99Ms), ratio(p.overRttFloor)], w),
    );
  }
  for (const s of report.skipped) console.log(`  skipped: ${s}`);
}

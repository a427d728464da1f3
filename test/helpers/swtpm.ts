/**
 * A real TPM 2.0 simulator (swtpm) for integration tests: each call starts a private instance on
 * free loopback ports with its state in a fresh temp dir. Nothing is registered globally; callers
 * stop (or dispose) what they start, and a test process that dies anyway takes its swtpm children
 * with it (setpriv --pdeathsig), so no simulator outlives a test run.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const SWTPM_INSTALL_HINT = 'apt-get install swtpm swtpm-tools tpm2-tools';

function missingCommand(command: string, args: string[]): string | undefined {
  const probe = spawnSync(command, args, { stdio: 'ignore' });
  if (probe.error) return `${command} not found (${probe.error.message})`;
  return undefined;
}

/** Reason swtpm cannot be used here (not installed), or undefined. */
export function swtpmMissing(): string | undefined {
  return missingCommand('swtpm', ['--version']);
}

/** Reason the tpm2-tools cross-checks cannot run here, or undefined. */
export function tpm2ToolsMissing(): string | undefined {
  return missingCommand('tpm2_createprimary', ['--version']) ?? missingCommand('tpm2_load', ['--version']);
}

const hasSetpriv = missingCommand('setpriv', ['--version']) === undefined;

export interface Swtpm {
  readonly tcti: string;
  /** swtpm's own state (its NV memory, including the owner seed). */
  readonly stateDir: string;
  /** Stops the simulator: SIGTERM (then SIGKILL after 2 s), or straight away with `signal`. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** SIGSTOP (true) or SIGCONT (false): a simulator that hangs, its sockets still open. */
  pause(paused: boolean): void;
  /** starts again on the same state and port */
  start(): Promise<void>;
  /** Stops the simulator and removes its temp dir. */
  dispose(): Promise<void>;
}

export interface SwtpmOptions {
  /** Serve on UNIX sockets instead of TCP (tcti `swtpm:path=…`). */
  unix?: boolean;
}

/** Starts swtpm in a fresh temp dir on free loopback ports (or UNIX sockets); see Swtpm. */
export async function startSwtpm(options: SwtpmOptions = {}): Promise<Swtpm> {
  const root = await mkdtemp(join(tmpdir(), 'gatehouse-swtpm-'));
  const stateDir = join(root, 'state');
  const logFile = join(root, 'swtpm.log');
  let target: { tcti: string; server: string; ctrl: string; probe: () => Promise<boolean> };
  if (options.unix) {
    const socketPath = join(root, 'tpm.sock');
    target = {
      tcti: `swtpm:path=${socketPath}`,
      server: `type=unixio,path=${socketPath}`,
      ctrl: `type=unixio,path=${join(root, 'ctrl.sock')}`,
      probe: () => accepts({ path: socketPath }),
    };
  } else {
    // tpm2-tss's swtpm TCTI expects the control channel on the next port up.
    const port = await freePortPair();
    target = {
      tcti: `swtpm:host=127.0.0.1,port=${port}`,
      server: `type=tcp,port=${port},bindaddr=127.0.0.1`,
      ctrl: `type=tcp,port=${port + 1},bindaddr=127.0.0.1`,
      probe: () => accepts({ host: '127.0.0.1', port }),
    };
  }
  const swtpmArgs = [
    'socket',
    '--tpm2',
    '--server',
    target.server,
    '--ctrl',
    target.ctrl,
    '--flags',
    'not-need-init,startup-clear',
    '--tpmstate',
    `dir=${stateDir}`,
    '--log',
    `file=${logFile},level=1`,
  ];
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  const launch = async (): Promise<void> => {
    await mkdir(stateDir, { recursive: true });
    const started = hasSetpriv
      ? spawn('setpriv', ['--pdeathsig', 'KILL', 'swtpm', ...swtpmArgs], { stdio: 'ignore' })
      : spawn('swtpm', swtpmArgs, { stdio: 'ignore' });
    child = started;
    let gone = false;
    exited = new Promise((resolve) => {
      started.once('exit', () => {
        gone = true;
        resolve();
      });
      started.once('error', () => {
        gone = true;
        resolve();
      });
    });
    // A forgotten instance must not keep the test process alive; pdeathsig then ends it.
    started.unref();
    const deadline = Date.now() + 5000;
    while (!(await target.probe())) {
      if (gone || Date.now() > deadline) {
        const log = await readFile(logFile, 'utf8').catch(() => '');
        started.kill('SIGKILL');
        await exited;
        child = undefined;
        throw new Error(
          `swtpm did not start (${gone ? `exit ${started.exitCode}` : 'timeout'}): ${log.trim()}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };

  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    const running = child;
    if (!running) return;
    child = undefined;
    if (running.exitCode === null && running.signalCode === null) {
      running.kill(signal);
      // A paused simulator cannot act on SIGTERM until it runs again.
      running.kill('SIGCONT');
      const timer = setTimeout(() => running.kill('SIGKILL'), 2000);
      await exited;
      clearTimeout(timer);
    }
  };

  const start = async (): Promise<void> => {
    if (child) return;
    // Right after a stop the port can still be held for a moment; swtpm then exits and we retry.
    for (let attempt = 1; ; attempt++) {
      try {
        await launch();
        return;
      } catch (error) {
        if (attempt === 5) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
      }
    }
  };

  await start();
  return {
    tcti: target.tcti,
    stateDir,
    stop,
    pause: (paused) => void child?.kill(paused ? 'SIGSTOP' : 'SIGCONT'),
    start,
    dispose: async () => {
      await stop();
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** Whether something accepts connections there; the probe connection is closed at once. */
function accepts(where: { host: string; port: number } | { path: string }): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(where);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** A port P such that P and P+1 are both free on 127.0.0.1 right now. */
async function freePortPair(): Promise<number> {
  const listen = (port: number) =>
    new Promise<ReturnType<typeof createServer> | undefined>((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(undefined));
      server.listen(port, '127.0.0.1', () => resolve(server));
    });
  const close = (server: ReturnType<typeof createServer>) =>
    new Promise<void>((resolve) => server.close(() => resolve()));
  for (let attempt = 0; attempt < 50; attempt++) {
    const first = await listen(0);
    if (!first) continue;
    const address = first.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    const second = port > 0 && port < 65535 ? await listen(port + 1) : undefined;
    await close(first);
    if (second) {
      await close(second);
      return port;
    }
  }
  throw new Error('no two consecutive free loopback ports');
}

/**
 * A real headless Chromium for tests that check an HTML page the way a person would see it: a
 * screenshot, or the DOM after the page's scripts ran. Each call is one browser process with its
 * own temporary profile (removed after), bounded by a timeout; the whole process group is killed
 * when it ends, so no renderer or helper outlives a test.
 *
 * The binary is `$CHROMIUM_PATH` when set, else the first of `chromium`, `chromium-browser`,
 * `google-chrome` on the PATH. When none is found, `chromiumMissing()` says so with the package
 * to install and `requireChromium()` fails the test loudly (CI installs `chromium` in `.ci/run`).
 */
import { spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

export const CHROMIUM_INSTALL_HINT =
  'apt-get install chromium (or set CHROMIUM_PATH to a Chromium or Chrome binary)';

const CANDIDATES = ['chromium', 'chromium-browser', 'google-chrome'];

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The Chromium binary to use, or undefined when there is none. */
export function findChromium(): string | undefined {
  const override = process.env.CHROMIUM_PATH;
  if (override !== undefined && override !== '') return executable(override) ? override : undefined;
  const dirs = (process.env.PATH ?? '').split(delimiter).filter((dir) => dir !== '');
  for (const name of CANDIDATES) {
    for (const dir of dirs) {
      const path = join(dir, name);
      if (executable(path)) return path;
    }
  }
  return undefined;
}

/** Why Chromium cannot be used here, or undefined when it can. */
export function chromiumMissing(): string | undefined {
  if (findChromium() !== undefined) return undefined;
  const override = process.env.CHROMIUM_PATH;
  const what =
    override !== undefined && override !== ''
      ? `CHROMIUM_PATH=${override} is not an executable`
      : `none of ${CANDIDATES.join(', ')} is on the PATH`;
  return `headless Chromium is needed and ${what}; install with: ${CHROMIUM_INSTALL_HINT}`;
}

/**
 * Fails the test when Chromium is missing, never quietly: like skip-loudly.ts's banner, but a
 * failure, because a report check that silently did not run would look like a passing one.
 */
export function requireChromium(t: { name: string }): void {
  const missing = chromiumMissing();
  if (missing === undefined) return;
  console.error(`\n*** FAILED "${t.name}": ${missing} ***\n`);
  throw new Error(missing);
}

export interface ChromiumOptions {
  /** Viewport, which is also the screenshot's size in pixels. Default 1280 x 2400. */
  width?: number;
  height?: number;
  /** Virtual time the page gets to run its scripts and timers before the capture. Default 5000 ms. */
  virtualTimeBudgetMs?: number;
  /** Kill the browser after this long. Default 60 s. */
  timeoutMs?: number;
}

/** Runs headless Chromium on a local HTML file with `extraArgs`; resolves with its stdout. */
async function runChromium(htmlPath: string, extraArgs: string[], options: ChromiumOptions): Promise<string> {
  const binary = findChromium();
  if (binary === undefined) throw new Error(chromiumMissing());
  const profile = mkdtempSync(join(tmpdir(), 'gatehouse-chromium-'));
  const args = [
    '--headless',
    // Tests run as root in CI, where Chromium refuses to start sandboxed.
    '--no-sandbox',
    '--disable-gpu',
    // Containers often have a tiny /dev/shm.
    '--disable-dev-shm-usage',
    '--no-first-run',
    '--no-default-browser-check',
    '--disable-extensions',
    '--hide-scrollbars',
    '--force-device-scale-factor=1',
    `--user-data-dir=${profile}`,
    `--window-size=${options.width ?? 1280},${options.height ?? 2400}`,
    `--virtual-time-budget=${options.virtualTimeBudgetMs ?? 5000}`,
    ...extraArgs,
    pathToFileURL(resolve(htmlPath)).href,
  ];
  const timeoutMs = options.timeoutMs ?? 60_000;
  // Its own process group, so that the renderer and helper processes can be killed with it.
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const killGroup = (): void => {
    if (child.pid === undefined) return;
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // The group is already gone.
    }
  };
  const stdout: Buffer[] = [];
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
  child.stderr.on('data', (chunk: Buffer) => {
    // Only the end is worth quoting; Chromium is chatty about D-Bus in containers.
    stderr = (stderr + chunk.toString('utf8')).slice(-4000);
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup();
  }, timeoutMs);
  try {
    const code = await new Promise<number | null>((resolveExit, reject) => {
      child.once('error', reject);
      // A helper left behind could hold the pipes open and delay 'close' until the timeout.
      child.once('exit', killGroup);
      child.once('close', (exitCode) => resolveExit(exitCode));
    });
    if (timedOut)
      throw new Error(`Chromium did not finish within ${timeoutMs} ms; stderr ends with:\n${stderr}`);
    if (code !== 0) throw new Error(`Chromium exited with code ${code}; stderr ends with:\n${stderr}`);
    return Buffer.concat(stdout).toString('utf8');
  } finally {
    clearTimeout(timer);
    killGroup();
    rmSync(profile, { recursive: true, force: true });
  }
}

/** Renders `htmlPath` and writes a PNG of the viewport (`width` x `height`) to `pngPath`. */
export async function screenshot(
  htmlPath: string,
  pngPath: string,
  options: ChromiumOptions = {},
): Promise<void> {
  await runChromium(htmlPath, [`--screenshot=${resolve(pngPath)}`], options);
}

/** Loads `htmlPath`, lets its scripts run, and returns the serialized DOM. */
export async function dumpDom(htmlPath: string, options: ChromiumOptions = {}): Promise<string> {
  return runChromium(htmlPath, ['--dump-dom'], options);
}

/**
 * What `initialize` reports about this server: the user agent codex would build, CODEX_HOME and
 * the platform. Format (spec B.2):
 *   <originator>/<version> (<OS type> <OS version>; <arch>) <terminal> (<client name>; <client version>)
 */
import { readFileSync } from 'node:fs';
import { arch, platform } from 'node:os';
import { sanitizeHeaderValue } from '../protocol/header-value.js';

/** The codex release whose wire behaviour Gatehouse reproduces; the backend sees this version. */
export const CODEX_COMPAT_VERSION = '0.169.0';

/** Client names codex treats as internal: they never become the originator. */
const NON_ORIGINATING_CLIENTS = new Set(['codex_app_server_daemon', 'codex-backend']);
const DEFAULT_ORIGINATOR = 'codex_cli_rs';

export interface InitializeResult {
  userAgent: string;
  codexHome: string;
  platformFamily: string;
  platformOs: string;
}

export class ServerInfo {
  private readonly platformToken: string;
  private readonly terminal: string;

  constructor(
    readonly codexHome: string,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {
    this.platformToken = `${osType()}; ${rustArch()}`;
    this.terminal = terminalToken(env);
  }

  originator(clientName: string): string {
    const override = this.env.CODEX_INTERNAL_ORIGINATOR_OVERRIDE;
    if (override) return override;
    return NON_ORIGINATING_CLIENTS.has(clientName) ? DEFAULT_ORIGINATOR : clientName;
  }

  userAgent(clientName: string, clientVersion: string): string {
    const ua =
      `${this.originator(clientName)}/${CODEX_COMPAT_VERSION} (${this.platformToken}) ${this.terminal}` +
      ` (${clientName}; ${clientVersion})`;
    return sanitizeHeaderValue(ua);
  }

  initializeResult(clientName: string, clientVersion: string): InitializeResult {
    return {
      userAgent: this.userAgent(clientName, clientVersion),
      codexHome: this.codexHome,
      platformFamily: platform() === 'win32' ? 'windows' : 'unix',
      platformOs: rustOs(),
    };
  }
}

function rustOs(): string {
  const p = platform();
  return p === 'darwin' ? 'macos' : p === 'win32' ? 'windows' : p;
}

function rustArch(): string {
  const a = arch();
  return a === 'x64' ? 'x86_64' : a === 'arm64' ? 'aarch64' : a === 'ia32' ? 'x86' : a;
}

/** "Debian 12.0.0" like the os_info crate: distribution name and a three-part version. */
function osType(): string {
  if (platform() !== 'linux') return `${rustOs() === 'macos' ? 'Mac OS' : rustOs()} unknown`;
  try {
    const release = readFileSync('/etc/os-release', 'utf8');
    const field = (k: string) => new RegExp(`^${k}="?([^"\\n]*)"?$`, 'm').exec(release)?.[1];
    const id = field('ID') ?? 'linux';
    const name = id.charAt(0).toUpperCase() + id.slice(1);
    const version = field('VERSION_ID');
    if (!version) return `${name} Rolling Release`;
    const parts = version.split('.');
    while (parts.length < 3) parts.push('0');
    return `${name} ${parts.join('.')}`;
  } catch {
    return 'Linux unknown';
  }
}

/** codex's terminal detection, simplified: TERM_PROGRAM[/version], else TERM, else "unknown". */
function terminalToken(env: NodeJS.ProcessEnv): string {
  if (env.TERM_PROGRAM) {
    return env.TERM_PROGRAM_VERSION ? `${env.TERM_PROGRAM}/${env.TERM_PROGRAM_VERSION}` : env.TERM_PROGRAM;
  }
  return env.TERM || 'unknown';
}

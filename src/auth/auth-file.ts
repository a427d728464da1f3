/**
 * `$CODEX_HOME/auth.json`, the one place credentials touch disk: an API key, or the tokens of a
 * browser login. Host-owned tokens never come here. Written atomically (temporary file, then
 * rename) with mode 0600, so a crash leaves either the old file or the new one.
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../util/atomic-file.js';

export interface StoredTokens {
  id_token: string;
  access_token: string;
  refresh_token: string;
  account_id: string | null;
}

/** The file's layout, as codex writes it. */
export interface AuthFileContent {
  auth_mode: 'apikey' | 'chatgpt';
  OPENAI_API_KEY: string | null;
  tokens: StoredTokens | null;
  last_refresh: string | null;
}

export class AuthFileError extends Error {
  override name = 'AuthFileError';
}

export class AuthFile {
  readonly path: string;

  constructor(codexHome: string) {
    this.path = join(codexHome, 'auth.json');
  }

  /** The stored credentials, or null when there are none. A damaged file is an error, not "none". */
  read(): AuthFileContent | null {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new AuthFileError(`cannot read ${this.path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw new AuthFileError(`${this.path} is not valid JSON`);
    }
    const content = value as Partial<AuthFileContent> | null;
    if (typeof content?.OPENAI_API_KEY === 'string' && content.OPENAI_API_KEY !== '') {
      return {
        auth_mode: 'apikey',
        OPENAI_API_KEY: content.OPENAI_API_KEY,
        tokens: null,
        last_refresh: null,
      };
    }
    const tokens = content?.tokens;
    if (tokens && typeof tokens.access_token === 'string' && typeof tokens.id_token === 'string') {
      return {
        auth_mode: 'chatgpt',
        OPENAI_API_KEY: null,
        tokens: {
          id_token: tokens.id_token,
          access_token: tokens.access_token,
          refresh_token: typeof tokens.refresh_token === 'string' ? tokens.refresh_token : '',
          account_id: typeof tokens.account_id === 'string' ? tokens.account_id : null,
        },
        last_refresh: typeof content.last_refresh === 'string' ? content.last_refresh : null,
      };
    }
    return null;
  }

  write(content: AuthFileContent): void {
    writeFileAtomic(this.path, JSON.stringify(content, null, 2) + '\n');
  }

  delete(): boolean {
    try {
      rmSync(this.path);
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
  }
}

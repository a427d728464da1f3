/** The modes of what Gatehouse leaves under CODEX_HOME: files 0600, folders 0700. */
import { lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/** Everything under `dir` (but `ignore`, names relative to it) whose mode is not private. */
export function widerThanPrivate(dir: string, ignore: readonly string[] = []): string[] {
  const found: string[] = [];
  for (const name of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
    if (ignore.includes(name)) continue;
    const stat = lstatSync(join(dir, name));
    const mode = stat.mode & 0o777;
    const want = stat.isDirectory() ? 0o700 : 0o600;
    if (mode !== want) found.push(`${name} ${mode.toString(8).padStart(4, '0')}`);
  }
  return found;
}

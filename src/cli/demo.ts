/**
 * `gatehouse demo`: an offline tour of the handshake. It starts `gatehouse app-server` as a real
 * child process with a throwaway CODEX_HOME, sends a short script (including bad input), and
 * prints both directions. Later features add the local backend to this tour.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SCRIPT: { note: string; line: string; expectReply: boolean }[] = [
  {
    note: 'a request before initialize',
    line: '{"id":1,"method":"mock/experimentalMethod","params":{}}',
    expectReply: true,
  },
  {
    note: 'initialize, opting into the experimental API',
    line: '{"id":2,"method":"initialize","params":{"clientInfo":{"name":"gatehouse_demo","title":null,"version":"0.1.0"},"capabilities":{"experimentalApi":true}}}',
    expectReply: true,
  },
  { note: 'the initialized notification (no reply)', line: '{"method":"initialized"}', expectReply: false },
  {
    note: 'a second initialize',
    line: '{"id":3,"method":"initialize","params":{"clientInfo":{"name":"x","version":"1"}}}',
    expectReply: true,
  },
  { note: 'bad JSON (logged on stderr, no reply)', line: '{"id": 4, "method": ', expectReply: false },
  { note: 'an unknown method', line: '{"id":5,"method":"no/such/method","params":{}}', expectReply: true },
  {
    note: 'the experimental mock method',
    line: '{"id":"six","method":"mock/experimentalMethod","params":{"value":"hello"}}',
    expectReply: true,
  },
];

export async function runDemo(): Promise<number> {
  const codexHome = mkdtempSync(join(tmpdir(), 'gatehouse-demo-'));
  const cli = fileURLToPath(new URL('./main.js', import.meta.url));
  const child = spawn(process.execPath, [cli, 'app-server'], {
    env: { ...process.env, CODEX_HOME: codexHome, GATEHOUSE_LOG: 'silent' },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const replies: string[] = [];
  let buffered = '';
  let wake: (() => void) | undefined;
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    const lines = buffered.split('\n');
    buffered = lines.pop()!;
    replies.push(...lines.filter(Boolean));
    wake?.();
  });
  const nextReply = () =>
    new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no reply from app-server within 5 s')), 5_000);
      const check = () => {
        const r = replies.shift();
        if (r === undefined) return;
        clearTimeout(timer);
        wake = undefined;
        resolve(r);
      };
      wake = check;
      check();
    });

  console.log(`gatehouse demo: app-server started (pid ${child.pid}), CODEX_HOME=${codexHome}\n`);
  try {
    for (const step of SCRIPT) {
      console.log(`# ${step.note}\n→ ${step.line}`);
      child.stdin.write(step.line + '\n');
      if (step.expectReply) console.log(`← ${await nextReply()}`);
      console.log();
    }
    child.stdin.end();
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    console.log(`stdin closed; app-server exited with status ${code}`);
    return code === 0 ? 0 : 1;
  } finally {
    child.kill();
    rmSync(codexHome, { recursive: true, force: true });
  }
}

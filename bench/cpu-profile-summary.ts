/**
 * Summarizes a V8 `.cpuprofile` (from `node --cpu-prof`, e.g. `npm run bench -- --cpu-prof dir`):
 * self time per function and per source file or package, largest first.
 *
 *   node dist/bench/cpu-profile-summary.js <file.cpuprofile> [top=25]
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** `file:///.../node_modules/pino/lib/x.js` -> `pino`; project files keep their path; node internals stay as is. */
function place(url: string): string {
  if (url === '') return '(native / VM)';
  const nm = url.lastIndexOf('/node_modules/');
  if (nm !== -1) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/');
    return (rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1] ?? ''}` : rest[0]) ?? url;
  }
  const dist = url.indexOf('/dist/');
  return dist !== -1 ? url.slice(dist + 1) : url;
}

function summarize(file: string, top: number): void {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const total = [...selfUs.values()].reduce((a, b) => a + b, 0);
  let idleUs = 0;
  const fns = new Map<string, number>();
  const places = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    if (functionName === '(idle)') idleUs += us;
    const fn = `${functionName || '(anonymous)'}  ${place(url)}${url ? `:${lineNumber + 1}` : ''}`;
    fns.set(fn, (fns.get(fn) ?? 0) + us);
    places.set(place(url), (places.get(place(url)) ?? 0) + us);
  }
  // Inclusive time: each sample counts once for every distinct function on its stack.
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const inclusive = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const onStack = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const { functionName, url, lineNumber } = byId.get(at)!.callFrame;
      if (functionName === '(root)' || functionName === '(idle)') continue;
      onStack.add(`${functionName || '(anonymous)'}  ${place(url)}${url ? `:${lineNumber + 1}` : ''}`);
    }
    for (const fn of onStack) inclusive.set(fn, (inclusive.get(fn) ?? 0) + us);
  }
  const busy = total - idleUs;
  const pct = (us: number): string => `${((us / busy) * 100).toFixed(1).padStart(5)}%`;
  console.log(
    `${file}\n  sampled ${(total / 1000).toFixed(0)} ms, busy ${(busy / 1000).toFixed(0)} ms (percentages of busy)`,
  );
  const print = (title: string, m: Map<string, number>): void => {
    console.log(`\n  ${title}`);
    for (const [name, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) {
      if (name.startsWith('(idle)')) continue;
      console.log(`  ${pct(us)}  ${(us / 1000).toFixed(0).padStart(6)} ms  ${name}`);
    }
  };
  print('self time by function', fns);
  print('self time by file / package', places);
  print('inclusive time by function', inclusive);
}

const [file, topArg] = process.argv.slice(2);
if (!file) {
  console.error('usage: node dist/bench/cpu-profile-summary.js <file.cpuprofile> [top]');
  process.exit(2);
}
summarize(file, Number(topArg ?? 25));

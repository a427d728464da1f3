/**
 * Raw stdio echo child: the transport ceiling Gatehouse is compared against. Reads JSON lines on
 * stdin, answers each `{"id":..,"params":..}` with `{"id":..,"result":params}`, and writes all the
 * answers to one input chunk with a single write() (stack-spike §4(7)). Exits when stdin closes.
 */
import { onLines } from './lines.js';

let out: string[] = [];

onLines(
  process.stdin,
  (line) => {
    const msg = JSON.parse(line) as { id?: unknown; params?: unknown };
    out.push(JSON.stringify({ id: msg.id, result: msg.params ?? null }));
  },
  () => {
    if (out.length === 0) return;
    process.stdout.write(out.join('\n') + '\n');
    out = [];
  },
);
process.stdin.on('end', () => process.stdout.end());

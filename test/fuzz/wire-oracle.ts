/**
 * What the server must answer to a generated sequence, and the check of what it did answer.
 *
 * The expected answers come from a model of one connection (uninitialized, then initialized once
 * with or without experimentalApi) and the exact texts of spec A.5/A.6/B.3/C.6. Every output
 * line is also held to codex's own JSON Schemas (shared/reference-schema, release 0.169.0).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import Ajv, { type ValidateFunction } from 'ajv';
import { ClientRequests } from '../../src/protocol/methods/index.js';
import { idJson, idKey, MOCK, type RequestBody, type WireItem } from './wire-arbitraries.js';

const ERROR_CODES = new Set([-32600, -32601, -32602, -32603, -32001]);
const INVALID_REQUEST = -32600;
const UNKNOWN_VARIANT_TAIL = `expected one of ${Object.keys(ClientRequests)
  .map((m) => `\`${m}\``)
  .join(', ')}`;
const NO_ACCOUNT = { account: null, userId: null, requiresOpenaiAuth: true, workspaceRouting: null };

// ---- reference schemas -----------------------------------------------------------------------

const REFERENCE = new URL('../../../shared/reference-schema/codex-0.169.0/', import.meta.url);
const ajv = new Ajv.default({ strict: false });
// codex marks integer widths with formats ajv does not know; the width is not what is tested.
for (const format of ['int32', 'int64', 'uint', 'uint16', 'uint32', 'uint64'])
  ajv.addFormat(format, { type: 'number', validate: Number.isInteger });
const schemas = new Map<string, ValidateFunction>();

/** codex's schema for `name` (e.g. `JSONRPCError`, `v2/GetAccountResponse`), compiled once. */
function referenceSchema(name: string): ValidateFunction {
  let validate = schemas.get(name);
  if (!validate) {
    const file = fileURLToPath(new URL(`${name}.json`, REFERENCE));
    validate = ajv.compile(JSON.parse(readFileSync(file, 'utf8')) as object);
    schemas.set(name, validate);
  }
  return validate;
}

function schemaProblem(name: string, value: unknown): string | undefined {
  const validate = referenceSchema(name);
  return validate(value) ? undefined : `${name}: ${ajv.errorsText(validate.errors)}`;
}

// ---- expectations ----------------------------------------------------------------------------

export type ExpectedAnswer =
  | { kind: 'error'; message: string }
  | { kind: 'result'; value: unknown; schema?: string }
  | { kind: 'initialized'; name: string; version: string };

export interface Plan {
  /** By id key: what the one answer must be, and the id as written (for messages). */
  expected: Map<string, { answer: ExpectedAnswer; idText: string; label: string }>;
  /** Ids (as JSON.parse reads them) of noise lines that could decode as requests. */
  noiseIds: Set<string>;
  counts: { requests: number; silent: number; noise: number };
}

interface ConnectionModel {
  initialized: boolean;
  experimental: boolean;
}

/** The answer the spec fixes for one request, given the connection's state; moves the state. */
function expectedAnswer(body: RequestBody, state: ConnectionModel): ExpectedAnswer {
  const invalid = (detail: string): ExpectedAnswer => ({
    kind: 'error',
    message: `Invalid request: ${detail}`,
  });
  const gated = (ready: () => ExpectedAnswer): ExpectedAnswer =>
    state.initialized ? ready() : { kind: 'error', message: 'Not initialized' };
  switch (body.kind) {
    case 'initialize':
      if (state.initialized) return { kind: 'error', message: 'Already initialized' };
      state.initialized = true;
      state.experimental = body.experimental === true;
      return { kind: 'initialized', name: body.name, version: body.version };
    case 'initialize-bad':
    case 'account-read-bad-type':
      return { kind: 'error', message: body.message };
    case 'account-read-no-params':
      return invalid('missing field `params`');
    case 'account-read':
      return gated(() => ({ kind: 'result', value: NO_ACCOUNT, schema: 'v2/GetAccountResponse' }));
    case 'mock':
      // Spec A.6: before initialize an experimental method gets `Not initialized`.
      return gated(() =>
        state.experimental
          ? { kind: 'result', value: { echoed: body.value ?? null } }
          : { kind: 'error', message: `${MOCK} requires experimentalApi capability` },
      );
    case 'unknown-method':
      return invalid(`unknown variant \`${body.method}\`, ${UNKNOWN_VARIANT_TAIL}`);
  }
}

/** The plan for one connection's sequence, in order. */
export function planFor(items: WireItem[]): Plan {
  const state: ConnectionModel = { initialized: false, experimental: false };
  const plan: Plan = {
    expected: new Map(),
    noiseIds: new Set(),
    counts: { requests: 0, silent: 0, noise: 0 },
  };
  for (const item of items) {
    if (item.type === 'request') {
      plan.counts.requests++;
      plan.expected.set(idKey(item.id), {
        answer: expectedAnswer(item.body, state),
        idText: idJson(item.id),
        label: item.body.kind,
      });
    } else if (item.type === 'silent') {
      plan.counts.silent++;
    } else {
      plan.counts.noise++;
      for (const id of noiseRequestIds(item.bytes)) plan.noiseIds.add(id);
    }
  }
  return plan;
}

/**
 * Ids of what in a noise item JSON.parse reads as an object with a string method: each line (stdio)
 * and the whole item (one WebSocket frame).
 */
function noiseRequestIds(bytes: Buffer): string[] {
  const ids: string[] = [];
  const whole = bytes.toString('utf8');
  for (const text of [whole, ...whole.split('\n')]) {
    try {
      const v = JSON.parse(text) as Record<string, unknown> | null;
      if (v && typeof v === 'object' && typeof v.method === 'string') ids.push(looseIdKey(v.id));
    } catch {
      // not JSON: cannot be answered
    }
  }
  return ids;
}

function looseIdKey(id: unknown): string {
  return typeof id === 'string' ? `s:${id}` : `n:${String(id)}`;
}

// ---- checking the output ---------------------------------------------------------------------

/** The answers' key order is codex's: `{"id":..,"result":..}` and `{"error":..,"id":..}`. */
const RESULT_HEAD = /^\{"id":(-?\d+|"(?:[^"\\]|\\.)*"),"result":/;
const ERROR_TAIL = /,"id":(-?\d+|"(?:[^"\\]|\\.)*")\}$/;

/** The id key of an answer line (strings by value, integers by digits), if it is an answer. */
export function answerKey(raw: string): string | undefined {
  const token = (raw.startsWith('{"error":') ? ERROR_TAIL : RESULT_HEAD).exec(raw)?.[1];
  if (token === undefined) return undefined;
  return token.startsWith('"') ? `s:${JSON.parse(token) as string}` : `i:${BigInt(token).toString()}`;
}

export interface OutputReport {
  answers: number;
  noiseAnswers: number;
  notifications: number;
  problems: string[];
}

/**
 * Checks every output line against the plan: each expected id answered exactly once and as the
 * spec says, nothing else answered except noise that could decode as a request, every line valid
 * under codex's schemas. `codexHome` is what `initialize` must report.
 */
export function checkOutput(lines: string[], plan: Plan, codexHome: string): OutputReport {
  const report: OutputReport = { answers: 0, noiseAnswers: 0, notifications: 0, problems: [] };
  const problem = (text: string) => {
    if (report.problems.length < 20) report.problems.push(text);
  };
  const seen = new Map<string, number>();
  for (const raw of lines) {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(raw) as Record<string, unknown>;
    } catch {
      problem(`not JSON on the output: ${raw.slice(0, 200)}`);
      continue;
    }
    if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) {
      problem(`not an object on the output: ${raw.slice(0, 200)}`);
      continue;
    }
    if ('jsonrpc' in msg) problem(`jsonrpc member written: ${raw.slice(0, 200)}`);
    if ('method' in msg) {
      report.notifications++;
      if ('id' in msg) problem(`unexpected server request: ${raw.slice(0, 200)}`);
      else if (!Number.isSafeInteger(msg.emittedAtMs)) problem(`notification without emittedAtMs: ${raw}`);
      else {
        const p = schemaProblem('ServerNotification', msg);
        if (p) problem(`${p}: ${raw.slice(0, 300)}`);
      }
      continue;
    }
    report.answers++;
    const isError = 'error' in msg;
    const token = (isError ? ERROR_TAIL : RESULT_HEAD).exec(raw)?.[1];
    if (token === undefined) {
      problem(`answer not in codex's key order: ${raw.slice(0, 200)}`);
      continue;
    }
    const p = schemaProblem(isError ? 'JSONRPCError' : 'JSONRPCResponse', msg);
    if (p) problem(`${p}: ${raw.slice(0, 300)}`);
    if (isError) {
      const { code, message } = msg.error as { code: number; message: string };
      if (!ERROR_CODES.has(code))
        problem(`error code ${code} is not one of the spec's: ${raw.slice(0, 200)}`);
      if (message === '') problem(`empty error message: ${raw.slice(0, 200)}`);
    }
    const key = answerKey(raw)!;
    const want = plan.expected.get(key);
    if (!want) {
      report.noiseAnswers++;
      if (!plan.noiseIds.has(looseIdKey(msg.id)))
        problem(`answer to a line that should get none: ${raw.slice(0, 300)}`);
      continue;
    }
    seen.set(key, (seen.get(key) ?? 0) + 1);
    const why = answerProblem(want.answer, msg, codexHome);
    if (why) problem(`id ${want.idText} (${want.label}): ${why}; got ${raw.slice(0, 300)}`);
  }
  for (const [key, want] of plan.expected) {
    const n = seen.get(key) ?? 0;
    if (n !== 1) problem(`id ${want.idText} (${want.label}) answered ${n} times, expected once`);
  }
  return report;
}

function answerProblem(
  want: ExpectedAnswer,
  msg: Record<string, unknown>,
  codexHome: string,
): string | undefined {
  if (want.kind === 'error') {
    const error = msg.error as Record<string, unknown> | undefined;
    if (!error) return `expected error "${want.message}"`;
    if (error.code !== INVALID_REQUEST || error.message !== want.message || 'data' in error)
      return `expected {"code":${INVALID_REQUEST},"message":${JSON.stringify(want.message)}}`;
    return undefined;
  }
  if (!('result' in msg)) return 'expected a result';
  if (want.kind === 'result') {
    if (JSON.stringify(msg.result) !== JSON.stringify(want.value))
      return `expected result ${JSON.stringify(want.value)}`;
    return want.schema ? schemaProblem(want.schema, msg.result) : undefined;
  }
  const result = msg.result as Record<string, unknown>;
  const schema = schemaProblem('v1/InitializeResponse', result);
  if (schema) return schema;
  const ua = String(result.userAgent);
  if (!ua.startsWith(`${want.name}/`) || !ua.endsWith(`(${want.name}; ${want.version})`))
    return `userAgent does not name ${want.name} ${want.version}`;
  if (result.codexHome !== codexHome) return `codexHome ${String(result.codexHome)} is not ${codexHome}`;
  return undefined;
}

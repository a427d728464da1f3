/**
 * Generators for the wire fuzzer: sequences of inbound lines of three kinds.
 *
 * - `request`: a valid request whose answer the spec fixes (spec A.5, A.6, B.3, C.6). Its id is
 *   unique in the sequence and lives in a namespace no other line uses, so an answer can be told
 *   apart from anything else, and "exactly one answer" can be checked.
 * - `silent`: input the spec says gets no reply at all (A.3, A.4), or that codex's serde_json
 *   decoder refuses (nesting past 128, numbers beyond f64, lone surrogates, duplicated members),
 *   plus what the transport drops (invalid UTF-8, lines over max_line_bytes).
 * - `noise`: random text and bytes, and byte-level mutations of request lines. Its outcome is not
 *   predicted; the checker only holds its answers (if any) to the general invariants.
 *
 * Every item is written as whole lines ending in `\n` (or `\r\n`), so a valid request never
 * merges with the garbage next to it; chunk boundaries are random and independent of lines.
 */
import fc from 'fast-check';
import { ClientRequests } from '../../src/protocol/methods/index.js';

export type IdSpec =
  | { kind: 'int'; value: number }
  | { kind: 'big'; digits: string }
  | { kind: 'str'; value: string; escaped: boolean };

export type RequestBody =
  | { kind: 'initialize'; name: string; version: string; experimental: boolean | undefined }
  | { kind: 'initialize-bad'; params: unknown; message: string }
  | { kind: 'account-read'; params: Record<string, unknown> }
  | { kind: 'account-read-no-params'; form: 'omitted' | 'null' }
  | { kind: 'account-read-bad-type'; params: unknown; message: string }
  | { kind: 'mock'; value: string | null | undefined }
  | { kind: 'unknown-method'; method: string };

export interface Dressing {
  order: number;
  jsonrpc: boolean;
  trace: boolean;
  extra: boolean;
  spaced: boolean;
  crlf: boolean;
}

export type WireItem =
  | { type: 'request'; id: IdSpec; body: RequestBody; dressing: Dressing }
  | { type: 'silent'; why: string; bytes: Buffer }
  | { type: 'noise'; bytes: Buffer };

/** The transport limit the generators aim huge lines at. */
export interface WireLimits {
  maxLineBytes: number;
}

const METHOD_NAMES = new Set(Object.keys(ClientRequests));
export const MOCK = 'mock/experimentalMethod';
const GET_ACCOUNT = 'GetAccountParams';

// ---- ids -------------------------------------------------------------------------------------

/** Valid integer ids are at least 10^12 in size: mutated noise lines use small ones. */
const intId = fc
  .tuple(fc.boolean(), fc.integer({ min: 1_000_000_000_000, max: Number.MAX_SAFE_INTEGER }))
  .map(([neg, n]): IdSpec => ({ kind: 'int', value: neg ? -n : n }));

/** Beyond 2^53 and within i64: these must come back digit for digit. */
const bigId = fc
  .bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })
  .filter((n) => n > 2n ** 53n || n < -(2n ** 53n))
  .map((n): IdSpec => ({ kind: 'big', digits: n.toString() }));

const strId = fc
  .tuple(fc.string({ unit: 'binary', maxLength: 12 }), fc.boolean())
  .map(([value, escaped]): IdSpec => ({ kind: 'str', value, escaped }));

const idSpec = fc.oneof(
  { weight: 3, arbitrary: strId },
  { weight: 3, arbitrary: intId },
  { weight: 1, arbitrary: bigId },
  {
    weight: 1,
    arbitrary: fc.constantFrom<IdSpec>(
      { kind: 'big', digits: '9223372036854775807' },
      { kind: 'big', digits: '-9223372036854775808' },
    ),
  },
);

/** The id as written. Strings may be written with every character escaped (`\u0041`). */
export function idJson(id: IdSpec): string {
  if (id.kind === 'int') return String(id.value);
  if (id.kind === 'big') return id.digits;
  if (!id.escaped) return JSON.stringify(id.value);
  let out = '"';
  for (let i = 0; i < id.value.length; i++)
    out += `\\u${id.value.charCodeAt(i).toString(16).padStart(4, '0')}`;
  return `${out}"`;
}

/** How answers are matched to requests: strings by value, integers by their exact digits. */
export function idKey(id: IdSpec): string {
  if (id.kind === 'str') return `s:${id.value}`;
  return `i:${id.kind === 'int' ? BigInt(id.value).toString() : BigInt(id.digits).toString()}`;
}

/** Makes the ids of a sequence unique and namespaced (strings get a `v<n>:` prefix). */
export function uniquify(items: WireItem[]): WireItem[] {
  const seen = new Set<string>();
  return items.map((item, index) => {
    if (item.type !== 'request') return item;
    let id = item.id;
    if (id.kind === 'str') id = { ...id, value: `v${index}:${id.value}` };
    while (seen.has(idKey(id))) {
      id =
        id.kind === 'int'
          ? { kind: 'int', value: id.value > 0 ? id.value - 1 : id.value + 1 }
          : id.kind === 'big'
            ? {
                kind: 'big',
                digits: (BigInt(id.digits) > 0n ? BigInt(id.digits) - 1n : BigInt(id.digits) + 1n).toString(),
              }
            : { ...id, value: `${id.value}'` };
    }
    seen.add(idKey(id));
    return { ...item, id };
  });
}

// ---- request bodies --------------------------------------------------------------------------

const headerSafe = fc.stringMatching(/^[A-Za-z0-9_.-]{1,16}$/);

/** JSON of bounded depth for unknown members: ignored by the decoder, must not upset it. */
const junkValue = fc.jsonValue({ maxDepth: 4 });

const initialize = fc
  .record({
    name: headerSafe,
    version: headerSafe,
    experimental: fc.option(fc.boolean(), { nil: undefined }),
  })
  .map((b): RequestBody => ({ kind: 'initialize', ...b }));

const initializeBad = fc.constantFrom<RequestBody>(
  { kind: 'initialize-bad', params: {}, message: 'Invalid request: missing field `clientInfo`' },
  {
    kind: 'initialize-bad',
    params: { clientInfo: { name: 'x' } },
    message: 'Invalid request: missing field `version`',
  },
  {
    kind: 'initialize-bad',
    params: { clientInfo: { name: 'x', version: '1' }, capabilities: { experimentalApi: 'yes' } },
    message: 'Invalid request: invalid type: string "yes", expected a boolean',
  },
);

/** account/read with `{}`, `refreshToken: false`, or unknown members (nested, long strings). */
const accountRead = fc
  .oneof(
    fc.constant({}),
    fc.constant({ refreshToken: false }),
    fc.record({ bogus: junkValue }),
    fc.record({ nested: fc.integer({ min: 1, max: 120 }).map(nestedArrays) }),
    // Two bytes a character; stays under the smallest max_line_bytes the fuzzer uses (8 KiB).
    fc.record({ long: fc.integer({ min: 1_000, max: 3_500 }).map((n) => 'é'.repeat(n)) }),
  )
  .map((params): RequestBody => ({ kind: 'account-read', params }));

/** `levels` nested arrays: `[[[]]]` for 3. Inside a request's params the total depth is levels + 2. */
export function nestedArrays(levels: number): unknown {
  let v: unknown = [];
  for (let i = 1; i < levels; i++) v = [v];
  return v;
}

const badType = fc.oneof(
  fc.integer({ min: -1_000_000, max: 1_000_000 }).map((n) => [n, `integer \`${n}\``] as const),
  fc.boolean().map((b) => [b, `boolean \`${b}\``] as const),
  fc.integer({ min: -1000, max: 1000 }).map((n) => [n + 0.5, `floating point \`${n + 0.5}\``] as const),
  fc.array(fc.integer(), { maxLength: 3 }).map((a) => [a, 'sequence'] as const),
  fc.stringMatching(/^[a-z ]{0,10}$/).map((s) => [s, `string "${s}"`] as const),
);
const accountReadBadType = badType.map(([params, what]): RequestBody => ({
  kind: 'account-read-bad-type',
  params,
  message: `Invalid request: invalid type: ${what}, expected struct ${GET_ACCOUNT}`,
}));

const mock = fc
  .option(fc.oneof(fc.string({ unit: 'binary', maxLength: 40 }), fc.constant(null)), { nil: undefined })
  .map((value): RequestBody => ({ kind: 'mock', value }));

const unknownMethod = fc
  .string({ unit: 'binary', maxLength: 24 })
  .filter((m) => !METHOD_NAMES.has(m))
  .map((method): RequestBody => ({ kind: 'unknown-method', method }));

const requestBody = fc.oneof(
  { weight: 2, arbitrary: initialize },
  { weight: 1, arbitrary: initializeBad },
  { weight: 5, arbitrary: accountRead },
  {
    weight: 1,
    arbitrary: fc.constantFrom<RequestBody>(
      { kind: 'account-read-no-params', form: 'omitted' },
      { kind: 'account-read-no-params', form: 'null' },
    ),
  },
  { weight: 2, arbitrary: accountReadBadType },
  { weight: 4, arbitrary: mock },
  { weight: 2, arbitrary: unknownMethod },
);

const dressing = fc.record({
  order: fc.nat(5),
  jsonrpc: fc.boolean(),
  trace: fc.boolean(),
  extra: fc.boolean(),
  spaced: fc.boolean(),
  crlf: fc.boolean(),
});

export function methodOf(body: RequestBody): string {
  switch (body.kind) {
    case 'initialize':
    case 'initialize-bad':
      return 'initialize';
    case 'mock':
      return MOCK;
    case 'unknown-method':
      return body.method;
    default:
      return 'account/read';
  }
}

/** The params member, or undefined when the request has none. */
function paramsOf(body: RequestBody): unknown {
  switch (body.kind) {
    case 'initialize': {
      const params: Record<string, unknown> = { clientInfo: { name: body.name, version: body.version } };
      if (body.experimental !== undefined) params.capabilities = { experimentalApi: body.experimental };
      return params;
    }
    case 'initialize-bad':
    case 'account-read':
    case 'account-read-bad-type':
      return body.params;
    case 'account-read-no-params':
      return body.form === 'null' ? null : undefined;
    case 'mock':
      return body.value === undefined ? {} : { value: body.value };
    case 'unknown-method':
      return {};
  }
}

const ORDERS = [
  ['id', 'method', 'params'],
  ['method', 'id', 'params'],
  ['params', 'method', 'id'],
  ['method', 'params', 'id'],
  ['id', 'params', 'method'],
  ['params', 'id', 'method'],
] as const;

/** The request's members as `"key":json` pieces, in the dressing's order. */
function requestMembers(idText: string, method: string, params: unknown, d: Dressing): string[] {
  const value: Record<string, string | undefined> = {
    id: idText,
    method: JSON.stringify(method),
    params: params === undefined ? undefined : JSON.stringify(params),
  };
  const members = ORDERS[d.order % ORDERS.length]!.filter((k) => value[k] !== undefined).map(
    (k) => `"${k}":${value[k]}`,
  );
  if (d.jsonrpc) members.push('"jsonrpc":"2.0"');
  if (d.trace)
    members.unshift(
      '"trace":{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","tracestate":null}',
    );
  if (d.extra) members.push('"x-extra":{"a":[1,{"b":null}]}');
  return members;
}

function joinMembers(members: string[], spaced: boolean): string {
  return spaced ? `{ ${members.join(' ,\t')} }` : `{${members.join(',')}}`;
}

/** One request line, with its terminator. */
export function requestLine(id: IdSpec, body: RequestBody, d: Dressing): string {
  const text = joinMembers(requestMembers(idJson(id), methodOf(body), paramsOf(body), d), d.spaced);
  return text + (d.crlf ? '\r\n' : '\n');
}

const request = fc
  .record({ id: idSpec, body: requestBody, dressing })
  .map((r): WireItem => ({ type: 'request', ...r }));

// ---- silent lines ----------------------------------------------------------------------------

const utf8 = (s: string) => Buffer.from(s, 'utf8');
const line = (s: string) => utf8(`${s}\n`);
const silent = (why: string, bytes: Buffer): WireItem => ({ type: 'silent', why, bytes });

/** A well-formed request text to corrupt; ids are small so they cannot meet a valid one. */
const template = fc
  .record({
    id: fc.oneof(
      fc.nat(999_999).map(String),
      fc.string({ maxLength: 6 }).map((s) => JSON.stringify(`n:${s}`)),
    ),
    // Never initialize: a mutated copy that still decodes would initialize the connection.
    body: requestBody.filter((b) => b.kind !== 'initialize' && b.kind !== 'initialize-bad'),
  })
  .map(({ id, body }) => {
    const params = paramsOf(body);
    return joinMembers(
      requestMembers(id, methodOf(body), params, {
        order: 0,
        jsonrpc: false,
        trace: false,
        extra: false,
        spaced: false,
        crlf: false,
      }),
      false,
    );
  });

/** Ids that make a request line a notification (spec A.3): dropped without a reply. */
const notAnId = fc.constantFrom(
  'null',
  '1.5',
  '1.0',
  '1e3',
  '-0',
  '{"n":1}',
  '[1]',
  'true',
  '9223372036854775808',
  '-9223372036854775809',
  '18446744073709551616',
);

function silentGenerators(limits: WireLimits) {
  return [
    fc
      .tuple(notAnId, requestBody)
      .map(([id, body]) =>
        silent(
          `id ${id}`,
          line(
            joinMembers(
              [
                `"id":${id}`,
                `"method":${JSON.stringify(methodOf(body))}`,
                `"params":${JSON.stringify(paramsOf(body) ?? {})}`,
              ],
              false,
            ),
          ),
        ),
      ),
    // Notifications, including `initialize` sent without an id: never answered, no state change.
    requestBody.map((body) => {
      const params = paramsOf(body);
      return silent(
        'notification',
        line(
          JSON.stringify(
            params === undefined ? { method: methodOf(body) } : { method: methodOf(body), params },
          ),
        ),
      );
    }),
    // Cut short: no proper prefix of an object text is JSON.
    fc.tuple(template, fc.nat()).map(([t, n]) => silent('truncated', line(t.slice(0, n % t.length)))),
    fc
      .constantFrom(
        'not json',
        '{"id":1,"method":"account/read"}}',
        "{'id':1}",
        '{"id":1,"method":"account/read",}',
        'NaN',
        'Infinity',
        '-',
        '{"id":01,"method":"account/read"}',
        '  \t ',
        '\u00a0{}',
      )
      .map((t) => silent('invalid JSON', line(t))),
    // JSON that is not an object, including a batch of valid requests.
    fc
      .jsonValue({ maxDepth: 3 })
      .filter((v) => typeof v !== 'object' || v === null || Array.isArray(v))
      .map((v) => silent('not an object', line(JSON.stringify(v)))),
    fc
      .array(template, { minLength: 1, maxLength: 3 })
      .map((ts) => silent('batch', line(`[${ts.join(',')}]`))),
    fc
      .constantFrom(
        '{}',
        '{"id":5}',
        '{"foo":"bar"}',
        '{"id":6,"method":7}',
        '{"id":7,"method":null}',
        '{"id":8,"error":{"code":"x","message":"m"}}',
      )
      .map((t) => silent('no shape', line(t))),
    // Answers to server requests that were never sent.
    fc
      .tuple(fc.integer(), junkValue)
      .map(([id, result]) => silent('unknown response', line(JSON.stringify({ id, result })))),
    fc
      .tuple(fc.integer(), fc.string({ maxLength: 8 }))
      .map(([id, message]) =>
        silent('unknown error', line(JSON.stringify({ id, error: { code: -32000, message } }))),
      ),
    // Dropped by the framer.
    fc
      .tuple(
        template,
        fc.constantFrom([0xff], [0xc3], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80]),
        fc.nat(),
      )
      .map(([t, bad, at]) => {
        const b = utf8(t);
        const cut = at % b.length;
        return silent(
          'invalid UTF-8',
          Buffer.concat([b.subarray(0, cut), Buffer.from(bad), b.subarray(cut), Buffer.from('\n')]),
        );
      }),
    fc.integer({ min: 1, max: limits.maxLineBytes }).map((extra) => {
      const t = JSON.stringify({
        id: 'n:big',
        method: MOCK,
        params: { value: 'x'.repeat(limits.maxLineBytes + extra) },
      });
      return silent('oversized', line(t));
    }),
    // What serde_json refuses although JSON.parse accepts it.
    fc
      .tuple(template, fc.integer({ min: 127, max: 2_000 }))
      .map(([t, levels]) =>
        silent('nesting past 128', line(`${t.slice(0, -1)},"deep":${JSON.stringify(nestedArrays(levels))}}`)),
      ),
    fc
      .tuple(template, fc.constantFrom('1e400', '-1e309', '1E+999', '9'.repeat(400)))
      .map(([t, n]) => silent('number out of range', line(`${t.slice(0, -1)},"n":${n}}`))),
    fc
      .tuple(template, fc.constantFrom('\\ud800', '\\udfff', 'a\\ud83d', '\\ude00x'))
      .map(([t, s]) => silent('lone surrogate', line(`${t.slice(0, -1)},"s":"${s}"}`))),
    fc
      .tuple(template, fc.constantFrom('"id":"n:dup"', '"id":1', '"method":"account/read"'))
      .map(([t, dup]) => silent('duplicate member', line(`${t.slice(0, -1)},${dup}}`))),
    fc
      .tuple(template, fc.constantFrom('5', '"x"', '[]', '{"traceparent":1}', '{"tracestate":false}'))
      .map(([t, trace]) => silent('malformed trace', line(`${t.slice(0, -1)},"trace":${trace}}`))),
    fc.constantFrom('\n', '\r\n', '\n\n\n').map((t) => silent('blank line', utf8(t))),
  ];
}

// ---- noise -----------------------------------------------------------------------------------

type Mutation = (b: Buffer, r: number[]) => Buffer;
const at = (b: Buffer, r: number) => (b.length === 0 ? 0 : r % b.length);
const MUTATIONS: Mutation[] = [
  (b, [p = 0, v = 0]) =>
    Buffer.concat([b.subarray(0, at(b, p)), Buffer.from([v % 256]), b.subarray(at(b, p) + 1)]),
  (b, [p = 0, n = 0]) => Buffer.concat([b.subarray(0, at(b, p)), b.subarray(at(b, p) + (n % 8) + 1)]),
  (b, [p = 0, v = 0, w = 0]) =>
    Buffer.concat([b.subarray(0, at(b, p)), Buffer.from([v % 256, w % 256]), b.subarray(at(b, p))]),
  (b, [p = 0, q = 0]) =>
    Buffer.concat([b.subarray(0, at(b, q)), b.subarray(at(b, p), at(b, p) + 16), b.subarray(at(b, q))]),
  (b, [p = 0]) =>
    Buffer.concat([b.subarray(0, at(b, p)), Buffer.from('"\\{[:,]}'.charAt(p % 8)), b.subarray(at(b, p))]),
];

const mutated = fc
  .tuple(
    template,
    fc.array(fc.tuple(fc.nat(MUTATIONS.length - 1), fc.array(fc.nat(), { minLength: 3, maxLength: 3 })), {
      minLength: 1,
      maxLength: 4,
    }),
  )
  .map(([t, ops]) => {
    let b: Buffer = utf8(t);
    for (const [op, r] of ops) b = MUTATIONS[op]!(b, r);
    return b;
  });

const noise = fc
  .oneof(
    { weight: 3, arbitrary: mutated },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 60 }).map(utf8) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 60 }).map((a) => Buffer.from(a)) },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => utf8(JSON.stringify(v))) },
  )
  .map((bytes): WireItem => ({ type: 'noise', bytes: Buffer.concat([bytes, Buffer.from('\n')]) }));

// ---- sequences -------------------------------------------------------------------------------

export function wireItem(limits: WireLimits): fc.Arbitrary<WireItem> {
  return fc.oneof(
    { weight: 5, arbitrary: request },
    { weight: 3, arbitrary: fc.oneof(...silentGenerators(limits)) },
    { weight: 2, arbitrary: noise },
  );
}

/** A sequence of lines for one connection, ids made unique. */
export function wireSequence(limits: WireLimits, maxLength = 60): fc.Arbitrary<WireItem[]> {
  // Long sequences by default: a connection's set-up costs more than a line.
  return fc.array(wireItem(limits), { minLength: 1, maxLength, size: 'max' }).map(uniquify);
}

/** The bytes of one item as sent. */
export function itemBytes(item: WireItem): Buffer {
  return item.type === 'request' ? utf8(requestLine(item.id, item.body, item.dressing)) : item.bytes;
}

/** Random cut points for a byte stream of `length` bytes, sorted and distinct. */
export function chunkCuts(length: number, seeds: number[]): number[] {
  return [...new Set(seeds.map((s) => (length === 0 ? 0 : s % length)))].sort((a, b) => a - b);
}

export function splitAt(bytes: Buffer, cuts: number[]): Buffer[] {
  const chunks: Buffer[] = [];
  let from = 0;
  for (const cut of cuts) {
    if (cut > from) chunks.push(bytes.subarray(from, cut));
    from = Math.max(from, cut);
  }
  if (from < bytes.length) chunks.push(bytes.subarray(from));
  return chunks;
}

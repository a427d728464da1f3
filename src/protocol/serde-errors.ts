/**
 * codex decodes params with serde, and its error texts are part of the wire contract (spec A.5):
 * `invalid type: string "nope", expected struct GetAccountParams`, ``missing field `clientInfo` ``,
 * ``unknown variant `bogus`, expected one of `apiKey`, ...``. This module walks one of our
 * TypeBox (JSON Schema) definitions the way serde walks a Rust type and reports the first error
 * serde would report, or nothing when the value is valid.
 *
 * Shapes understood (the subset our registry uses):
 *   object with `title`  -> struct (entries visited in input order, then missing fields in
 *                           declaration order; unknown members ignored)
 *   object + additionalProperties schema -> map
 *   anyOf [T, null]      -> Option<T>
 *   anyOf of string consts -> unit-variant enum
 *   anyOf of objects sharing a const-string member -> internally tagged enum
 *   string, boolean, integer, number, array, {} (any JSON value)
 */

export type JsonSchema = Record<string, unknown>;

export function serdeError(schema: JsonSchema, value: unknown): string | undefined {
  return visit(schema, value);
}

export function unknownVariant(variant: string, expected: readonly string[]): string {
  return `unknown variant \`${variant}\`, ${expectedOneOf(expected)}`;
}

export function missingField(name: string): string {
  return `missing field \`${name}\``;
}

function expectedOneOf(names: readonly string[]): string {
  const quoted = names.map((n) => `\`${n}\``);
  if (quoted.length === 0) return 'there are no variants';
  if (quoted.length === 1) return `expected ${quoted[0]}`;
  if (quoted.length === 2) return `expected ${quoted[0]} or ${quoted[1]}`;
  return `expected one of ${quoted.join(', ')}`;
}

function visit(schema: JsonSchema, value: unknown): string | undefined {
  const anyOf = schema.anyOf as JsonSchema[] | undefined;
  if (anyOf) return visitUnion(schema, anyOf, value);
  switch (schema.type) {
    case 'string':
      if (typeof value !== 'string') return invalidType(value, 'a string');
      if (typeof schema.const === 'string' && value !== schema.const) {
        return unknownVariant(value, [schema.const]);
      }
      return undefined;
    case 'boolean':
      return typeof value === 'boolean' ? undefined : invalidType(value, 'a boolean');
    case 'integer':
      return Number.isInteger(value) ? undefined : invalidType(value, 'i64');
    case 'number':
      return typeof value === 'number' ? undefined : invalidType(value, 'f64');
    case 'null':
      return value === null ? undefined : invalidType(value, 'unit');
    case 'array':
      return visitArray(schema, value);
    case 'object':
      return visitObject(schema, value);
    default:
      return undefined; // {} accepts any JSON value
  }
}

function visitArray(schema: JsonSchema, value: unknown): string | undefined {
  if (!Array.isArray(value)) return invalidType(value, 'a sequence');
  const items = schema.items as JsonSchema | undefined;
  if (!items) return undefined;
  for (const item of value) {
    const e = visit(items, item);
    if (e) return e;
  }
  return undefined;
}

function visitObject(schema: JsonSchema, value: unknown): string | undefined {
  const properties = schema.properties as Record<string, JsonSchema> | undefined;
  const additional = schema.additionalProperties;
  if (!properties && typeof additional === 'object' && additional !== null) {
    if (!isPlainObject(value)) return invalidType(value, 'a map');
    for (const v of Object.values(value)) {
      const e = visit(additional as JsonSchema, v);
      if (e) return e;
    }
    return undefined;
  }
  if (!isPlainObject(value)) return invalidType(value, structName(schema));
  const props = properties ?? {};
  for (const [key, member] of Object.entries(value)) {
    const memberSchema = props[key];
    if (!memberSchema) continue;
    const e = visit(memberSchema, member);
    if (e) return e;
  }
  const required = new Set((schema.required as string[] | undefined) ?? []);
  for (const key of Object.keys(props)) {
    if (required.has(key) && !(key in value)) return missingField(key);
  }
  return undefined;
}

function visitUnion(schema: JsonSchema, branches: JsonSchema[], value: unknown): string | undefined {
  const nonNull = branches.filter((b) => b.type !== 'null');
  if (nonNull.length < branches.length && nonNull.length === 1) {
    return value === null ? undefined : visit(nonNull[0]!, value); // Option<T>
  }
  if (nonNull.every((b) => typeof b.const === 'string')) {
    const names = nonNull.map((b) => b.const as string);
    if (typeof value !== 'string') return invalidType(value, 'string or map');
    return names.includes(value) ? undefined : unknownVariant(value, names);
  }
  const tag = commonTag(nonNull);
  if (tag) {
    if (!isPlainObject(value)) {
      return invalidType(value, `internally tagged enum ${titleOf(schema)}`);
    }
    if (!(tag in value)) return missingField(tag);
    const names = nonNull.map((b) => (b.properties as Record<string, JsonSchema>)[tag]!.const as string);
    const variant = value[tag];
    if (typeof variant !== 'string') return invalidType(variant, 'variant identifier');
    const index = names.indexOf(variant);
    if (index < 0) return unknownVariant(variant, names);
    return visit(nonNull[index]!, value);
  }
  // An untagged union: serde tries each branch and reports a generic failure.
  if (branches.some((b) => visit(b, value) === undefined)) return undefined;
  return `data did not match any variant of untagged enum ${titleOf(schema)}`;
}

function commonTag(branches: JsonSchema[]): string | undefined {
  const first = branches[0]?.properties as Record<string, JsonSchema> | undefined;
  if (!first) return undefined;
  return Object.keys(first).find((key) =>
    branches.every((b) => {
      const p = (b.properties as Record<string, JsonSchema> | undefined)?.[key];
      return p !== undefined && typeof p.const === 'string';
    }),
  );
}

function titleOf(schema: JsonSchema): string {
  return typeof schema.title === 'string' ? schema.title : 'Enum';
}

function structName(schema: JsonSchema): string {
  return typeof schema.title === 'string' ? `struct ${schema.title}` : 'a map';
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function invalidType(value: unknown, expected: string): string {
  return `invalid type: ${unexpected(value)}, expected ${expected}`;
}

/** serde_json's description of a value it did not expect. */
function unexpected(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'boolean') return `boolean \`${value}\``;
  if (typeof value === 'number') {
    return Number.isInteger(value) ? `integer \`${value}\`` : `floating point \`${value}\``;
  }
  if (typeof value === 'string') return `string ${rustDebugString(value)}`;
  if (Array.isArray(value)) return 'sequence';
  return 'map';
}

/** Rust's `{:?}` for a str: quotes, backslash escapes, `\u{..}` for other control characters. */
export function rustDebugString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\0') out += '\\0';
    else if (c < 0x20 || (c >= 0x7f && c < 0xa0)) out += `\\u{${c.toString(16)}}`;
    else out += ch;
  }
  return out + '"';
}

/**
 * `generate-json-schema`: the registry written out as draft-07 JSON Schema, laid out as codex lays
 * out its own: the four direction unions, the JSON-RPC envelope and `RequestId` at the top, and
 * one file per payload type under `v1/` or `v2/`.
 *
 * The TypeBox schemas are JSON Schema already. The work here is naming: every sub-schema with a
 * `title` is lifted into a `definitions` entry and referenced by `$ref`, so a shared type
 * (ClientInfo, AuthMode, ...) is spelled once per file and `generate-ts` can give it a file of its own.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Type, type TSchema } from 'typebox';
import {
  ClientNotifications,
  ClientRequests,
  ServerNotifications,
  ServerRequests,
} from '../protocol/methods/index.js';
import type { SchemaVersion } from '../protocol/registry.js';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/** A titled schema, lifted out of wherever it was used. */
export interface NamedSchema {
  readonly name: string;
  /** `v1`/`v2` for payload types and the types they use; undefined for the top-level files. */
  readonly version: SchemaVersion | undefined;
  /** The schema without its title; titled sub-schemas in it are `$ref`s to `#/definitions/<title>`. */
  readonly body: JsonObject;
  /** Roots get a JSON file of their own; the others only appear as `definitions` entries. */
  readonly root: boolean;
}

const DRAFT_07 = 'http://json-schema.org/draft-07/schema#';
const TYPE_NAME = /^[A-Za-z_$][\w$]*$/;
const REF_PREFIX = '#/definitions/';

// The envelope is not a method, so it is declared here rather than in the registry. It follows
// spec A.2: a request may carry `trace`, a server notification carries `emittedAtMs`.
const RequestId = Type.Union([Type.String(), Type.Integer({ format: 'int64' })], { title: 'RequestId' });
const NullableString = Type.Optional(Type.Union([Type.String(), Type.Null()]));
const W3cTraceContext = Type.Object(
  { traceparent: NullableString, tracestate: NullableString },
  { title: 'W3cTraceContext' },
);
const JSONRPCRequest = Type.Object(
  {
    id: RequestId,
    method: Type.String(),
    params: Type.Optional(Type.Unknown()),
    trace: Type.Optional(
      Type.Union([W3cTraceContext, Type.Null()], { description: 'W3C Trace Context, if any.' }),
    ),
  },
  { title: 'JSONRPCRequest', description: 'A request; the peer answers with a response or an error.' },
);
const JSONRPCNotification = Type.Object(
  {
    method: Type.String(),
    params: Type.Optional(Type.Unknown()),
    emittedAtMs: Type.Optional(
      Type.Integer({
        format: 'int64',
        description: 'Unix time in ms, stamped on every server notification.',
      }),
    ),
  },
  { title: 'JSONRPCNotification', description: 'A message that gets no answer.' },
);
const JSONRPCResponse = Type.Object(
  { id: RequestId, result: Type.Unknown() },
  { title: 'JSONRPCResponse', description: 'The successful answer to a request.' },
);
const JSONRPCErrorError = Type.Object(
  { code: Type.Integer({ format: 'int64' }), message: Type.String(), data: Type.Optional(Type.Unknown()) },
  { title: 'JSONRPCErrorError' },
);
const JSONRPCError = Type.Object(
  { error: JSONRPCErrorError, id: RequestId },
  { title: 'JSONRPCError', description: 'The failed answer to a request.' },
);
const JSONRPCMessage = Type.Union([JSONRPCRequest, JSONRPCNotification, JSONRPCResponse, JSONRPCError], {
  title: 'JSONRPCMessage',
  description: 'Any message on the wire, in either direction (the `jsonrpc` member is never written).',
});
const ENVELOPE = [
  JSONRPCMessage,
  JSONRPCRequest,
  JSONRPCNotification,
  JSONRPCResponse,
  JSONRPCError,
  JSONRPCErrorError,
];

/** Collects named schemas; the same title used for two different schemas is a registry bug. */
class Catalog {
  readonly named = new Map<string, NamedSchema>();

  /** Registers a titled schema (and, through `walk`, every titled schema inside it); returns its name. */
  add(schema: JsonObject, version: SchemaVersion | undefined, root: boolean): string {
    const { title, ...rest } = schema;
    if (typeof title !== 'string') throw new Error(`schema needs a title: ${JSON.stringify(schema)}`);
    const body = this.walk(rest, version);
    const seen = this.named.get(title);
    if (seen && canonicalJson(seen.body) !== canonicalJson(body)) {
      throw new Error(`two different schemas are titled '${title}'`);
    }
    // A nested type stays in the folder of its first user, unless it turns out to be a payload itself.
    const keepSeen = seen && (seen.root || !root);
    this.named.set(title, {
      name: title,
      version: keepSeen ? seen.version : version,
      body,
      root: root || (seen?.root ?? false),
    });
    return title;
  }

  /** Adds a ready-made schema (a direction union) whose sub-schemas are already walked. */
  addBuilt(name: string, body: JsonObject): void {
    this.named.set(name, { name, version: undefined, body, root: true });
  }

  /**
   * Copies a schema, replacing titled sub-schemas with `$ref`s. Only keywords that hold schemas
   * are descended into: `properties` is a map of names, and a property may well be called `title`.
   */
  private walk(node: JsonObject, version: SchemaVersion | undefined): JsonObject {
    const sub = (s: Json): Json => {
      if (!isObject(s)) return s; // `true`/`false` schemas
      if (typeof s.title !== 'string') return this.walk(s, version);
      // Codex titles enum variants `ApiKeyv2::LoginAccountParams`: a label that stays inline, not a type name.
      if (!TYPE_NAME.test(s.title)) return { ...this.walk(s, version), title: s.title };
      return { $ref: REF_PREFIX + this.add(s, version, false) };
    };
    const out: JsonObject = {};
    for (const [key, value] of Object.entries(node)) {
      if ((key === 'properties' || key === 'definitions') && isObject(value)) {
        out[key] = Object.fromEntries(Object.entries(value).map(([k, v]) => [k, sub(v)]));
      } else if (
        key === 'anyOf' ||
        key === 'oneOf' ||
        key === 'allOf' ||
        (key === 'items' && Array.isArray(value))
      ) {
        out[key] = (value as Json[]).map(sub);
      } else if (key === 'items' || key === 'additionalProperties' || key === 'not') {
        out[key] = sub(value);
      } else if (key === 'required' && Array.isArray(value)) {
        out[key] = [...(value as string[])].sort(); // a set: sorted so output does not depend on declaration order
      } else {
        out[key] = value;
      }
    }
    return out;
  }
}

/**
 * Every type of the protocol, keyed by name. Without `experimental`, experimental methods and
 * the types only they use are left out. Shared with `generate-ts`.
 */
export function buildCatalog(options: { experimental: boolean }): Map<string, NamedSchema> {
  const catalog = new Catalog();
  const add = (schema: TSchema, version: SchemaVersion | undefined) =>
    catalog.add(plain(schema), version, true);
  add(RequestId, undefined);
  for (const schema of ENVELOPE) add(schema, undefined);

  const requestVariants = (defs: Record<string, RegistryEntry>) =>
    Object.entries(defs)
      .filter(([, def]) => options.experimental || !def.experimental)
      .map(([method, def]) => {
        const params = add(def.params, def.version);
        if (def.result) add(def.result, def.version);
        return variant(method, 'Request', params, def.paramsRequired ?? true);
      });
  const notificationVariants = (defs: Record<string, RegistryEntry>) =>
    Object.entries(defs)
      .filter(([, def]) => options.experimental || !def.experimental)
      .map(([method, def]) =>
        // codex declares payload-less notifications (`initialized`) with no `params` member at all.
        isEmptyObject(def.params)
          ? variant(method, 'Notification', undefined, false)
          : variant(method, 'Notification', add(def.params, def.version), true),
      );

  const union = (name: string, description: string, oneOf: JsonObject[]) =>
    catalog.addBuilt(name, { description, oneOf });
  union('ClientRequest', 'A request sent by the client.', requestVariants(ClientRequests));
  union('ServerRequest', 'A request sent by the server.', requestVariants(ServerRequests));
  union(
    'ServerNotification',
    'A notification sent by the server.',
    notificationVariants(ServerNotifications),
  );
  union(
    'ClientNotification',
    'A notification sent by the client.',
    notificationVariants(ClientNotifications),
  );
  return catalog.named;
}

/** The fields the generators read, common to the three kinds of registry entry. */
interface RegistryEntry {
  readonly params: TSchema;
  readonly result?: TSchema;
  readonly version?: SchemaVersion;
  readonly experimental?: boolean;
  readonly paramsRequired?: boolean;
}

/** One member of a direction union: `{id?, method: {enum: [name]}, params?}`, titled as codex does. */
function variant(
  method: string,
  kind: 'Request' | 'Notification',
  params: string | undefined,
  paramsRequired: boolean,
): JsonObject {
  const label = method.charAt(0).toUpperCase() + method.slice(1) + kind;
  const properties: JsonObject = {};
  if (kind === 'Request') properties.id = { $ref: `${REF_PREFIX}RequestId` };
  properties.method = { type: 'string', enum: [method], title: `${label}Method` };
  if (params !== undefined) {
    const ref = { $ref: REF_PREFIX + params };
    properties.params = paramsRequired ? ref : { anyOf: [ref, { type: 'null' }] };
  }
  const required = Object.keys(properties).filter((k) => k !== 'params' || paramsRequired);
  return { type: 'object', title: label, properties, required: required.sort() };
}

/** The names a schema refers to, directly or through other definitions (itself excluded unless recursive). */
export function referencedNames(named: Map<string, NamedSchema>, start: JsonObject): string[] {
  const found = new Set<string>();
  const visit = (value: Json): void => {
    if (Array.isArray(value)) value.forEach(visit);
    else if (isObject(value)) {
      for (const [key, v] of Object.entries(value)) {
        if (key === '$ref' && typeof v === 'string' && v.startsWith(REF_PREFIX)) {
          const name = v.slice(REF_PREFIX.length);
          if (found.has(name)) continue;
          found.add(name);
          const target = named.get(name);
          if (!target) throw new Error(`dangling reference to '${name}'`);
          visit(target.body);
        } else visit(v);
      }
    }
  };
  visit(start);
  return [...found].sort();
}

/** The file a root schema is written to, relative to the output folder. */
export function relativeFile(schema: NamedSchema, extension: string): string {
  return path.join(schema.version ?? '', schema.name + extension);
}

export async function writeJsonSchemas(outDir: string, options: { experimental: boolean }): Promise<number> {
  const named = buildCatalog(options);
  let written = 0;
  for (const schema of named.values()) {
    if (!schema.root) continue;
    const refs = referencedNames(named, schema.body);
    const document: JsonObject = { $schema: DRAFT_07, ...schema.body, title: schema.name };
    if (refs.length > 0) document.definitions = Object.fromEntries(refs.map((r) => [r, named.get(r)!.body]));
    const file = path.join(outDir, relativeFile(schema, '.json'));
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, canonicalJson(document, 2) + '\n');
    written++;
  }
  return written;
}

/** JSON with object keys sorted at every level, so output is the same whatever the declaration order. */
export function canonicalJson(value: Json, indent?: number): string {
  const sortKeys = (v: Json): Json =>
    Array.isArray(v)
      ? v.map(sortKeys)
      : isObject(v)
        ? Object.fromEntries(
            Object.keys(v)
              .sort()
              .map((k) => [k, sortKeys(v[k]!)]),
          )
        : v;
  return JSON.stringify(sortKeys(value), null, indent);
}

export function isObject(value: Json | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A TypeBox schema as plain JSON: drops TypeBox's non-enumerable bookkeeping (`~kind`, `~optional`). */
function plain(schema: TSchema): JsonObject {
  return JSON.parse(JSON.stringify(schema)) as JsonObject;
}

function isEmptyObject(schema: TSchema): boolean {
  const s = plain(schema);
  return s.type === 'object' && (!isObject(s.properties) || Object.keys(s.properties).length === 0);
}

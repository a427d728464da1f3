/**
 * One registry per direction; each method is declared once, here, with its TypeBox schemas,
 * experimental flag and scope. Validation, TypeScript types, JSON Schema and generate-ts all
 * derive from these declarations.
 */
import type { Static, TSchema } from 'typebox';
import { serdeError, type JsonSchema } from './serde-errors.js';

/** Which generated-schema folder a type belongs to, as in codex (`v1/`, `v2/`). */
export type SchemaVersion = 'v1' | 'v2';

/**
 * Requests that share a scope are served one at a time, in arrival order, by the scope's actor
 * (codex's per-key request queues). Requests without a scope run concurrently.
 */
export type Scope = 'account-auth' | 'remote-control';

export interface ClientRequestDef<P extends TSchema = TSchema, R extends TSchema = TSchema> {
  readonly params: P;
  readonly result: R;
  /** `false` when the method may be called without a `params` member. */
  readonly paramsRequired: boolean;
  /** The whole method needs `capabilities.experimentalApi`. */
  readonly experimental: boolean;
  /** For stable methods with experimental fields or variants: the descriptor in use, if any. */
  readonly experimentalUse?: (params: Static<P>) => string | undefined;
  readonly scope?: Scope;
  readonly version: SchemaVersion;
}

export interface ServerRequestDef<P extends TSchema = TSchema, R extends TSchema = TSchema> {
  readonly params: P;
  readonly result: R;
  /** How long the client has to answer before the request fails locally. */
  readonly timeoutMs: number;
  /** Omitted for types codex writes at the top level of its schema output. */
  readonly version?: SchemaVersion;
}

export interface NotificationDef<P extends TSchema = TSchema> {
  readonly params: P;
  readonly version: SchemaVersion;
  readonly experimental?: boolean;
}

export function defineClientRequest<P extends TSchema, R extends TSchema>(def: {
  params: P;
  result: R;
  paramsRequired?: boolean;
  experimental?: boolean;
  experimentalUse?: (params: Static<P>) => string | undefined;
  scope?: Scope;
  version: SchemaVersion;
}): ClientRequestDef<P, R> {
  return { paramsRequired: true, experimental: false, ...def };
}

export function defineServerRequest<P extends TSchema, R extends TSchema>(
  def: ServerRequestDef<P, R>,
): ServerRequestDef<P, R> {
  return def;
}

export function defineNotification<P extends TSchema>(def: NotificationDef<P>): NotificationDef<P> {
  return def;
}

export type ParamsOf<D> = D extends { params: infer P extends TSchema } ? Static<P> : never;
export type ResultOf<D> = D extends { result: infer R extends TSchema } ? Static<R> : never;

/**
 * Validation is the serde-style walker, which both checks a value and words the error exactly as
 * codex would. It is the only validator at run time (TypeBox's compiler costs a tenth of a second
 * at start-up); a property test holds it to TypeBox's own check.
 */
export function explainInvalid(schema: TSchema, value: unknown): string | undefined {
  return serdeError(schema as unknown as JsonSchema, value);
}

export function isValid<S extends TSchema>(schema: S, value: unknown): value is Static<S> {
  return explainInvalid(schema, value) === undefined;
}

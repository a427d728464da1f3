/**
 * Holds a generated schema to the one codex generates: both must accept and reject the same
 * instances. Ours is the committed snapshot under test/fixtures/schema; codex's come from
 * shared/reference-schema.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import Ajv from 'ajv';

export type SchemaCase = [label: string, instance: unknown, valid: boolean];

const readSchema = (url: URL) => JSON.parse(readFileSync(fileURLToPath(url), 'utf8')) as object;

export function assertSameVerdicts(
  release: 'codex-0.129.0' | 'codex-0.169.0',
  name: string,
  cases: SchemaCase[],
): void {
  // strict off: codex's files use `format` values (int64) that ajv does not know.
  const mine = new Ajv.default({ strict: false }).compile(
    readSchema(new URL(`../fixtures/schema/v2/${name}.json`, import.meta.url)),
  );
  const theirs = new Ajv.default({ strict: false }).compile(
    readSchema(new URL(`../../../shared/reference-schema/${release}/v2/${name}.json`, import.meta.url)),
  );
  for (const [label, instance, valid] of cases) {
    const value = JSON.parse(JSON.stringify(instance)) as unknown;
    assert.equal(theirs(value), valid, `codex's schema, ${label}`);
    assert.equal(mine(value), valid, `ours, ${label}`);
  }
}

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import Ajv from 'ajv';
import { writeJsonSchemas } from '../../src/schema/json-schema.js';
import { writeTypeScript } from '../../src/schema/typescript.js';

const run = promisify(execFile);
const repo = fileURLToPath(new URL('../../', import.meta.url));
const reference = fileURLToPath(new URL('../../../shared/reference-schema/codex-0.169.0/', import.meta.url));
const fixtures = path.join(repo, 'test/fixtures/schema');
const cli = path.join(repo, 'dist/src/cli/main.js');

type Schema = {
  definitions?: Record<string, Schema>;
  properties?: Record<string, unknown>;
  required?: string[];
  oneOf?: { properties: { method: { enum: string[] } } }[];
};

async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'gatehouse-schema-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function readJson(file: string): Promise<Schema> {
  return JSON.parse(await readFile(file, 'utf8')) as Schema;
}

/** Every file under `dir`, relative to it, sorted. */
async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

// ajv's typings declare its default export as a module under NodeNext; `.default` is the class.
// strict off: codex's files use `format` values (int64, uint32) that ajv does not know.
const newAjv = () => new Ajv.default({ strict: false });

const initializeParamsCases: [string, unknown, boolean][] = [
  [
    'spec example',
    {
      clientInfo: { name: 'research_client', title: null, version: '0.0.1' },
      capabilities: {
        experimentalApi: true,
        requestAttestation: true,
        optOutNotificationMethods: ['thread/started'],
      },
    },
    true,
  ],
  ['minimal', { clientInfo: { name: 'c', version: '1' } }, true],
  ['null capabilities', { clientInfo: { name: 'c', version: '1' }, capabilities: null }, true],
  ['missing clientInfo', { capabilities: {} }, false],
  ['clientInfo without version', { clientInfo: { name: 'c' } }, false],
  [
    'experimentalApi not a bool',
    { clientInfo: { name: 'c', version: '1' }, capabilities: { experimentalApi: 'yes' } },
    false,
  ],
  [
    'optOutNotificationMethods not an array',
    { clientInfo: { name: 'c', version: '1' }, capabilities: { optOutNotificationMethods: 'x' } },
    false,
  ],
];

const initializeResponseCases: [string, unknown, boolean][] = [
  [
    'spec example',
    {
      userAgent: 'x/0.169.0 (Debian 12.0.0; x86_64) xterm (x; 1)',
      codexHome: '/tmp/h',
      platformFamily: 'unix',
      platformOs: 'linux',
    },
    true,
  ],
  ['missing platformOs', { userAgent: 'x', codexHome: '/tmp/h', platformFamily: 'unix' }, false],
];

test('shared/ reference schemas are where the tests look for them', () => {
  assert.ok(
    existsSync(path.join(reference, 'v1/InitializeParams.json')),
    `no reference schemas at ${reference}`,
  );
});

for (const [name, cases] of [
  ['InitializeParams', initializeParamsCases],
  ['InitializeResponse', initializeResponseCases],
] as const) {
  test(`v1/${name}.json accepts and rejects the same instances as codex 0.169.0's`, async (t) => {
    const out = await tempDir(t);
    await writeJsonSchemas(out, { experimental: false });
    const ours = newAjv().compile(await readJson(path.join(out, `v1/${name}.json`)));
    const theirs = newAjv().compile(await readJson(path.join(reference, `v1/${name}.json`)));
    for (const [label, instance, valid] of cases) {
      assert.equal(theirs(instance), valid, `reference schema, ${label}`);
      assert.equal(ours(instance), valid, `generated schema, ${label}: ${JSON.stringify(ours.errors)}`);
    }
  });
}

test('generated required sets and property names match codex 0.169.0', async (t) => {
  const out = await tempDir(t);
  await writeJsonSchemas(out, { experimental: false });
  const shape = (s: Schema | undefined) => ({
    properties: Object.keys(s?.properties ?? {}).sort(),
    required: [...(s?.required ?? [])].sort(),
  });
  const ours = await readJson(path.join(out, 'v1/InitializeParams.json'));
  const theirs = await readJson(path.join(reference, 'v1/InitializeParams.json'));
  assert.deepEqual(shape(ours), shape(theirs), 'InitializeParams');
  for (const nested of ['ClientInfo', 'InitializeCapabilities']) {
    assert.ok(ours.definitions?.[nested], `${nested} is a definitions entry`);
    assert.deepEqual(shape(ours.definitions?.[nested]), shape(theirs.definitions?.[nested]), nested);
  }
  assert.deepEqual(ours.properties?.clientInfo, { $ref: '#/definitions/ClientInfo' });
  const response = await readJson(path.join(out, 'v1/InitializeResponse.json'));
  const referenceResponse = await readJson(path.join(reference, 'v1/InitializeResponse.json'));
  assert.deepEqual(shape(response), shape(referenceResponse), 'InitializeResponse');
});

test('experimental methods are written only with --experimental', async (t) => {
  const methods = async (experimental: boolean) => {
    const out = await tempDir(t);
    await writeJsonSchemas(out, { experimental });
    const union = await readJson(path.join(out, 'ClientRequest.json'));
    const files = await listFiles(out);
    return { methods: union.oneOf!.map((v) => v.properties.method.enum[0]), files };
  };
  const stable = await methods(false);
  const experimental = await methods(true);
  assert.ok(stable.methods.includes('initialize'));
  assert.ok(!stable.methods.includes('mock/experimentalMethod'));
  assert.ok(!stable.files.includes(path.join('v2', 'MockExperimentalMethodParams.json')));
  assert.ok(experimental.methods.includes('mock/experimentalMethod'));
  assert.ok(experimental.files.includes(path.join('v2', 'MockExperimentalMethodParams.json')));
});

test('the committed schema snapshot matches a fresh generation', async (t) => {
  const out = await tempDir(t);
  await writeJsonSchemas(out, { experimental: true });
  const hint =
    'the generated JSON Schema changed; if that is intended, run `npm run build && rm -rf test/fixtures/schema && ' +
    'node dist/src/cli/main.js app-server generate-json-schema --experimental --out test/fixtures/schema` and commit the result';
  const files = await listFiles(out);
  assert.deepEqual(await listFiles(fixtures), files, hint);
  for (const file of files) {
    const [fresh, committed] = await Promise.all([
      readFile(path.join(out, file), 'utf8'),
      readFile(path.join(fixtures, file), 'utf8'),
    ]);
    assert.equal(committed, fresh, `${file}: ${hint}`);
  }
});

test('generate-ts output compiles under tsc --strict and describes the wire messages', async (t) => {
  const out = await tempDir(t);
  const written = await writeTypeScript(out, { experimental: true });
  const files = (await listFiles(out)).filter((f) => f.endsWith('.ts'));
  assert.equal(files.length, written);
  assert.ok(files.includes('index.ts') && files.includes(path.join('v1', 'InitializeParams.ts')));
  // A few wire messages checked against the generated types, and one that must not compile.
  await writeFile(
    path.join(out, 'usage-check.ts'),
    `import type { ClientRequest, InitializeParams, ServerNotification } from './index.js';
export const init: ClientRequest = {
  id: 1,
  method: 'initialize',
  params: { clientInfo: { name: 'c', title: null, version: '1' }, capabilities: { experimentalApi: true } },
};
export const updated: ServerNotification = { method: 'account/updated', params: { authMode: 'apikey', planType: null } };
// @ts-expect-error clientInfo is required
export const bad: InitializeParams = { capabilities: null };
`,
  );
  const tsc = path.join(repo, 'node_modules/.bin/tsc');
  const args = [
    '--noEmit',
    '--strict',
    '--target',
    'ES2022',
    '--module',
    'NodeNext',
    '--moduleResolution',
    'NodeNext',
  ];
  // Run inside the output folder: tsc refuses a file list when a tsconfig.json sits in its cwd.
  const result = await run(tsc, [...args, ...files, 'usage-check.ts'], { cwd: out }).then(
    () => ({ code: 0, output: '' }),
    (e: { code: number; stdout: string }) => ({ code: e.code, output: e.stdout }),
  );
  assert.equal(result.code, 0, result.output);
});

test('the built CLI writes schemas, and generate-ts without --out is a usage error', async (t) => {
  assert.ok(existsSync(cli), `${cli} is missing: run npm run build first`);
  const out = await tempDir(t);
  const { stderr } = await run(process.execPath, [cli, 'app-server', 'generate-json-schema', '--out', out]);
  assert.match(stderr, /^wrote \d+ files/);
  const files = await listFiles(out);
  assert.ok(files.includes('ClientRequest.json') && files.includes(path.join('v1', 'InitializeParams.json')));

  const failed = await run(process.execPath, [cli, 'app-server', 'generate-ts']).then(
    () => assert.fail('generate-ts without --out succeeded'),
    (e: { code: number; stderr: string }) => e,
  );
  assert.equal(failed.code, 2);
  assert.match(failed.stderr, /--out/);
});

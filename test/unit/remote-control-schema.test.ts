/**
 * The remote-control schemas Gatehouse generates accept and reject the same instances as the
 * ones codex 0.169.0 generates (spec B.1): the status object in its four uses, and the nullable
 * enable/disable params.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import Ajv from 'ajv';

const readSchema = (url: URL) => JSON.parse(readFileSync(fileURLToPath(url), 'utf8')) as object;
const ours = (name: string) => readSchema(new URL(`../fixtures/schema/v2/${name}.json`, import.meta.url));
const codex = (name: string) =>
  readSchema(new URL(`../../../shared/reference-schema/codex-0.169.0/v2/${name}.json`, import.meta.url));

const status = {
  status: 'connected',
  serverName: 'vm',
  installationId: 'f5890a50-ad9a-4189-8766-5be4c4a36d73',
  environmentId: 'env_mock',
};
const statusCases: [string, unknown, boolean][] = [
  ['connected', status, true],
  ['disabled, null environment', { ...status, status: 'disabled', environmentId: null }, true],
  ['no environmentId member', { ...status, environmentId: undefined }, true],
  ['unknown status', { ...status, status: 'paused' }, false],
  ['no installationId', { ...status, installationId: undefined }, false],
  ['numeric environment', { ...status, environmentId: 7 }, false],
];
const paramsCases: [string, unknown, boolean][] = [
  ['null', null, true],
  ['empty', {}, true],
  ['ephemeral', { ephemeral: true }, true],
  ['string ephemeral', { ephemeral: 'yes' }, false],
];

const cases: [string, [string, unknown, boolean][]][] = [
  ['RemoteControlStatusReadResponse', statusCases],
  ['RemoteControlEnableResponse', statusCases],
  ['RemoteControlDisableResponse', statusCases],
  ['RemoteControlStatusChangedNotification', statusCases],
  ['NullableRemoteControlEnableParams', paramsCases],
  ['NullableRemoteControlDisableParams', paramsCases],
];

for (const [name, instances] of cases) {
  test(`v2/${name}.json accepts and rejects the same instances as codex 0.169.0's`, () => {
    const mine = new Ajv.default({ strict: false }).compile(ours(name));
    const theirs = new Ajv.default({ strict: false }).compile(codex(name));
    for (const [label, instance, valid] of instances) {
      const value = JSON.parse(JSON.stringify(instance)) as unknown;
      assert.equal(theirs(value), valid, `codex's schema, ${label}`);
      assert.equal(mine(value), valid, `ours, ${label}`);
    }
  });
}

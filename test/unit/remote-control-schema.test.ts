/**
 * The remote-control schemas Gatehouse generates accept and reject the same instances as the
 * ones codex 0.169.0 generates (spec B.1): the status object in its four uses, and the nullable
 * enable/disable params.
 */
import { test } from 'node:test';
import { assertSameVerdicts, type SchemaCase } from '../helpers/reference-schema.js';

const status = {
  status: 'connected',
  serverName: 'vm',
  installationId: 'f5890a50-ad9a-4189-8766-5be4c4a36d73',
  environmentId: 'env_mock',
};
const statusCases: SchemaCase[] = [
  ['connected', status, true],
  ['disabled, null environment', { ...status, status: 'disabled', environmentId: null }, true],
  ['no environmentId member', { ...status, environmentId: undefined }, true],
  ['unknown status', { ...status, status: 'paused' }, false],
  ['no installationId', { ...status, installationId: undefined }, false],
  ['numeric environment', { ...status, environmentId: 7 }, false],
];
const paramsCases: SchemaCase[] = [
  ['null', null, true],
  ['empty', {}, true],
  ['ephemeral', { ephemeral: true }, true],
  ['string ephemeral', { ephemeral: 'yes' }, false],
];

const cases: [string, SchemaCase[]][] = [
  ['RemoteControlStatusReadResponse', statusCases],
  ['RemoteControlEnableResponse', statusCases],
  ['RemoteControlDisableResponse', statusCases],
  ['RemoteControlStatusChangedNotification', statusCases],
  ['NullableRemoteControlEnableParams', paramsCases],
  ['NullableRemoteControlDisableParams', paramsCases],
];

for (const [name, instances] of cases) {
  test(`v2/${name}.json accepts and rejects the same instances as codex 0.169.0's`, () =>
    assertSameVerdicts('codex-0.169.0', name, instances));
}

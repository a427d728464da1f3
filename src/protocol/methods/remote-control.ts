/**
 * Remote control (spec B.1, codex 0.169.0): the three requests are experimental and share the
 * `remote-control` scope, so enable, disable and status reads are served in arrival order; the
 * status notification goes to every connection, experimental or not.
 */
import * as Type from 'typebox/type';
import { defineClientRequest, defineNotification } from '../registry.js';

export const RemoteControlConnectionStatus = Type.Union(
  [Type.Literal('disabled'), Type.Literal('connecting'), Type.Literal('connected'), Type.Literal('errored')],
  { title: 'RemoteControlConnectionStatus' },
);

/** The status object: one shape for the three results and the notification. */
const statusFields = () => ({
  status: RemoteControlConnectionStatus,
  serverName: Type.String(),
  installationId: Type.String(),
  environmentId: Type.Optional(Type.Union([Type.String(), Type.Null()])),
});

export const RemoteControlStatusChangedNotification = Type.Object(statusFields(), {
  title: 'RemoteControlStatusChangedNotification',
  description: 'Current remote-control connection status and remote identity exposed to clients.',
});

const RemoteControlEnableParams = Type.Object(
  { ephemeral: Type.Optional(Type.Boolean()) },
  { title: 'RemoteControlEnableParams' },
);
const RemoteControlDisableParams = Type.Object(
  { ephemeral: Type.Optional(Type.Boolean()) },
  { title: 'RemoteControlDisableParams' },
);

export type RemoteControlStatus = {
  status: 'disabled' | 'connecting' | 'connected' | 'errored';
  serverName: string;
  installationId: string;
  environmentId: string | null;
};

export const remoteControlRequests = {
  'remoteControl/status/read': defineClientRequest({
    // codex's `params` is a unit; named here so the schema generators can refer to it.
    params: Type.Null({ title: 'RemoteControlStatusReadParams' }),
    result: Type.Object(statusFields(), { title: 'RemoteControlStatusReadResponse' }),
    paramsRequired: false,
    experimental: true,
    scope: 'remote-control',
    version: 'v2',
  }),
  'remoteControl/enable': defineClientRequest({
    params: Type.Union([RemoteControlEnableParams, Type.Null()], {
      title: 'NullableRemoteControlEnableParams',
    }),
    result: Type.Object(statusFields(), { title: 'RemoteControlEnableResponse' }),
    paramsRequired: false,
    experimental: true,
    scope: 'remote-control',
    version: 'v2',
  }),
  'remoteControl/disable': defineClientRequest({
    params: Type.Union([RemoteControlDisableParams, Type.Null()], {
      title: 'NullableRemoteControlDisableParams',
    }),
    result: Type.Object(statusFields(), { title: 'RemoteControlDisableResponse' }),
    paramsRequired: false,
    experimental: true,
    scope: 'remote-control',
    version: 'v2',
  }),
};

export const remoteControlNotifications = {
  'remoteControl/status/changed': defineNotification({
    params: RemoteControlStatusChangedNotification,
    version: 'v2',
  }),
};

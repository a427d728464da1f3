/** The four registries, one per direction. Adding a method means adding it to one of these. */
import { accountNotifications, accountRequests, accountServerRequests } from './account.js';
import { attestationServerRequests } from './attestation.js';
import { deviceKeyRequests } from './device-key.js';
import { initializeRequests, initializedNotification } from './initialize.js';
import { mockRequests } from './mock.js';
import { realtimeNotifications, realtimeRequests } from './realtime.js';
import { remoteControlNotifications, remoteControlRequests } from './remote-control.js';
import { threadNotifications, threadRequests } from './thread.js';

export const ClientRequests = {
  ...initializeRequests,
  ...accountRequests,
  ...threadRequests,
  ...realtimeRequests,
  ...deviceKeyRequests,
  ...remoteControlRequests,
  ...mockRequests,
} as const;
export const ServerRequests = { ...accountServerRequests, ...attestationServerRequests } as const;
export const ServerNotifications = {
  ...accountNotifications,
  ...threadNotifications,
  ...realtimeNotifications,
  ...remoteControlNotifications,
} as const;
export const ClientNotifications = { ...initializedNotification } as const;

export type ClientMethod = keyof typeof ClientRequests;
export type ServerRequestMethod = keyof typeof ServerRequests;
export type ServerNotificationMethod = keyof typeof ServerNotifications;

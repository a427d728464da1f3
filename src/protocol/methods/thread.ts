/** Threads and turns: only what a minimal text turn through the Responses relay needs. */
export const threadRequests = {};
export const threadNotifications = {};

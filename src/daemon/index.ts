export { openDaemonHost, DaemonClient, RemoteHost } from './client.js';
export type { VmHost } from './client.js';
export { openDaemonConsole } from './console-client.js';
export type { DaemonConsole } from './console-client.js';
export { runDaemon } from './run.js';
export { groupId } from './group.js';
export type { DaemonRunOptions } from './run.js';
export { type VmDeletedEvent } from './api.js';
export { socketPath, API_VERSION, EVENT_NOTICE, EventNotice, DROPPED_NOTICE, DroppedNotice } from './api.js';

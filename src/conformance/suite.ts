import { Capabilities, GATED_METHODS } from 'hvplug/protocol';
import type { CheckDef } from './check.js';
import { cancelCheck } from './checks/cancel.js';
import { leftoversCheck } from './checks/cleanup.js';
import { concurrencyCheck } from './checks/concurrency.js';
import { deviceChecks } from './checks/devices.js';
import { eventChecks, eventOrderCheck } from './checks/events.js';
import { eventFieldsCheck, guestEventChecks } from './checks/guest-events.js';
import { handshakeChecks } from './checks/handshake.js';
import { idempotencyChecks } from './checks/idempotency.js';
import { lifecycleChecks } from './checks/lifecycle.js';
import { lifecycleTableCheck } from './checks/lifecycle-table.js';
import { methodChecks } from './checks/methods.js';
import { processChecks, stdoutCheck } from './checks/process.js';
import { beforeInitializeCheck, responsivenessChecks } from './checks/responsive.js';
import { sessionMethodChecks } from './checks/session-methods.js';
import { snapshotChecks } from './checks/snapshot.js';
import { wireChecks } from './checks/wire.js';

/**
 * The whole suite for a plugin with these capabilities, in running order. Checks that judge the whole
 * run (stdout, event order, the wire, leftovers) come last, the leftover check very last.
 */
export function buildSuite(caps: Capabilities): CheckDef[] {
  return [
    ...handshakeChecks(),
    beforeInitializeCheck,
    ...sessionMethodChecks(),
    ...methodChecks(caps.methods),
    ...lifecycleChecks(),
    lifecycleTableCheck,
    ...idempotencyChecks(),
    ...deviceChecks(caps),
    ...eventChecks(),
    ...guestEventChecks(),
    ...responsivenessChecks(),
    ...snapshotChecks(),
    concurrencyCheck,
    cancelCheck,
    ...processChecks(),
    stdoutCheck,
    eventOrderCheck,
    eventFieldsCheck,
    ...wireChecks(),
    leftoversCheck,
  ];
}

/** The id of every check the suite has for some plugin: what --only and --skip may name. */
export function everyCheckId(): string[] {
  return buildSuite(Capabilities.parse({ methods: GATED_METHODS })).map((c) => c.id);
}

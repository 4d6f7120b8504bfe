// zod/mini through a namespace import: esbuild keeps only the zod a plugin uses (see devices.ts).
import * as z from 'zod/mini';
import './locale.js';
import { VmEvent } from './vm.js';

/** Notifications (no reply). `direction` says who sends them. */
export const notifications = {
  initialized: { params: z.object({}), direction: 'host-to-plugin', summary: 'The host has accepted the handshake.' },
  exit: { params: z.object({}), direction: 'host-to-plugin', summary: 'Exit now (after shutdown).' },
  'vm/event': {
    params: VmEvent,
    direction: 'plugin-to-host',
    /** Concerns the VM its params name: only the process serving that VM may send it. */
    vmScoped: true,
    summary: 'A VM lifecycle or device event, ordered per VM by seq.',
  },
  '$/cancelRequest': {
    // The LSP's cancellation, which vscode-jsonrpc and any LSP library act on. The plugin sends none: it
    // makes no requests of its own to cancel.
    params: z.object({ id: z.union([z.string(), z.number()]) }),
    direction: 'host-to-plugin',
    summary: 'Cancel the request with this id: the plugin answers it with Cancelled, or with its result if it was done.',
  },
  '$/progress': {
    // The LSP shape ({token, value}), so generic JSON-RPC libraries route it as progress.
    params: z.object({
      token: z.union([z.string(), z.number()]),
      value: z.object({ message: z.optional(z.string()), percentage: z.optional(z.number().check(z.minimum(0), z.maximum(100))) }),
    }),
    direction: 'plugin-to-host',
    summary: 'Progress of a long call that was given a progressToken.',
  },
} as const;

export type NotificationName = keyof typeof notifications;

/** The VM a notification concerns, for the notifications the table marks vmScoped; undefined for the rest. */
export function notificationVmId(method: string, params: unknown): string | undefined {
  const def = Object.hasOwn(notifications, method) ? notifications[method as NotificationName] : undefined;
  if (!def || !('vmScoped' in def) || !def.vmScoped) return undefined;
  const vmId = (params as { vmId?: unknown } | null)?.vmId;
  return typeof vmId === 'string' ? vmId : '';
}
export type NotificationParamsOf<N extends NotificationName> = z.output<(typeof notifications)[N]['params']>;
export type Progress = NotificationParamsOf<'$/progress'>;

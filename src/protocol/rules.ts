/**
 * The protocol's rules that no schema can say, as RFC 2119 text: published in the OpenRPC document
 * (x-hvplug-rules) and generated into the plugin author's guide, so the two cannot differ.
 */
export interface Rule {
  readonly id: string;
  readonly text: string;
}

export const RULES: readonly Rule[] = [
  {
    id: 'stdout',
    text: 'A plugin MUST write nothing but framed JSON-RPC messages on stdout. Logs go to stderr, one line each: a JSON object with a numeric `level` (pino\'s: 10 trace, 20 debug, 30 info, 40 warn, 50 error, 60 fatal) and `msg` is logged by the host at that level with its fields; any other line is kept as text (a `fatal` line is logged as `error`: it is the plugin\'s end, not the host\'s). A line is cut at 64 KiB. The host logs up to 5,000 lines at once and 1,000 a second; the rest are counted in one warning and dropped.',
  },
  {
    id: 'message-size',
    text: 'A message MUST NOT exceed 16 MiB (its `Content-Length`, either way) nor hold more than 10,000 leaf values (scalars, and arrays and objects with nothing in them, at every depth; counted in bodies over 4 KiB). The host refuses one that does from its header or at once after parsing it, without checking it against a schema: a ProtocolError, and the plugin is killed and restarted. An error\'s data carries at most 100 issues (the last counting those left out).',
  },
  {
    id: 'initialize-first',
    text: 'Before `initialize` has been answered, a plugin MUST answer every other request with InvalidRequest (-32600) and MUST NOT send notifications. The host sends `initialize` first and `initialized` once it has accepted the answer.',
  },
  {
    id: 'responsive',
    text: 'A plugin MUST keep reading and answering while a long call runs: `health/ping` MUST be answered within its deadline (5 s) during a graceful `vm/stop`, a `vm/wait`, a snapshot. A plugin that stops answering `health/ping` is killed and restarted by the host\'s supervisor.',
  },
  {
    id: 'no-requests',
    text: 'A plugin MUST NOT send requests to the host. The host serves no methods and answers any request with MethodNotFound (-32601); a plugin that waits for something else waits forever. Notifications (`vm/event`, `$/progress`) are the only messages a plugin starts.',
  },
  {
    id: 'unknown-params',
    text: 'A plugin SHOULD ignore params members it does not know (a newer host may send more); the SDK strips them before the handler runs. A malformed known member MUST be answered with InvalidParams, data `{method, issues}`, where each issue\'s `path` is an array of keys and indexes (e.g. `["config", "devices", 0, "path"]`), not a dotted string.',
  },
  {
    id: 'unknown-result-keys',
    text: 'A plugin MAY add members to a result beyond its schema; the host ignores what it does not know. A result that lacks a required member, or has one of the wrong type, is a protocol error of that call.',
  },
  {
    id: 'capabilities-methods',
    text: '`capabilities.methods` MUST list gated methods only (the `x-hvplug-gated` ones), and exactly those the plugin implements. The host refuses an unlisted gated method itself (NotSupported) without calling the plugin; the session methods (`initialize`, `shutdown`, `health/ping`, `rpc.discover`) every plugin answers and none lists.',
  },
  {
    id: 'state-machine',
    text: 'A VM-scoped call MUST follow `x-hvplug-lifecycle`: in a status where the method is `forbidden` the plugin MUST answer InvalidState (data `{vmId, current, required}`, `required` an array of statuses) and change nothing; where it is `must`, it MUST NOT answer InvalidState; where it is `may`, either. A successful call MUST leave the VM in one of the transition\'s `to` statuses and MUST emit its `events`, in order, before the answer.',
  },
  {
    id: 'new-vm-events',
    text: 'A VM brought up anew (`vm/create`, `vm/restore`, `vm/receiveMigration`) MUST be announced by `created`, its first event, before the answer; `vm/restore` follows it with `paused`, the status it answers, and `vm/receiveMigration` with `running` once the stream has come in. A VM re-attached by `vm/recover` is not new: it gets no `created`, and its events in the new process go on from the status the answer gave. Every event MUST fit the status it finds: no `running` for a running or paused VM (a paused one gets `resumed`), `resumed` only for a paused one, no `paused` for a paused or stopped one.',
  },
  {
    id: 'exited-crashed',
    text: 'When a VMM process ends, the plugin MUST emit `exited` with `code` (integer or null), `signal` (name or null) and `reason`; the VM is then stopped. When the end was not asked for and not a clean guest power-off (the VMM was killed, died, or failed), the plugin MUST follow it with `crashed` (with `reason`); the VM is then crashed. A guest that powers itself off cleanly gives `exited` alone.',
  },
  {
    id: 'events',
    text: 'Every `vm/event` MUST carry `vmId`, `seq` and `time` (an RFC 3339 date-time, its offset included: `2025-01-01T00:00:00.000Z`; an ISO 8601 local time without offset is not one) and the fields its type requires. `seq` starts at 0 for each VM in each plugin process and increases by one per event of that VM; it does not carry on across a plugin restart (the host tells processes apart and drops an event whose seq is not newer than the last it applied from that process). The host drops an event that breaks its schema, and logs it. A plugin MUST send events only for VMs it was asked to create, restore, receive or recover and has not deleted; the host drops, and logs, an event for any other VM id.',
  },
  {
    id: 'state',
    text: 'The host keeps one opaque `state` per VM and passes it to `vm/recover`: the last one a result carried or a `state` event sent, whichever came last. A VMM that ends outside any call leaves the state of its last call (a pid that is gone, so the next process recovers the VM as `lost`) unless the plugin sends a `state` event saying how it ended. The `recovered` and `lost` events of a re-attach are the host\'s own, sent once `vm/recover` is answered (lost when its status is `lost` or it fails); a plugin answers `vm/recover` with the status and need not send them.',
  },
  {
    id: 'wait',
    text: '`vm/wait` on a running or paused VM stays pending until the VM is stopped, crashed, lost or deleted; on a VM in any other status (created included) it answers at once with that status. A wait ended by `vm/delete` answers with the status the delete left (the status enum has no `deleted`: `stopped` after its `exited`) and a reason saying the VM was deleted.',
  },
  {
    id: 'cancel',
    text: 'A plugin SHOULD end a cancelled call (`$/cancelRequest`) promptly and answer it with Cancelled (data `{method}`), or with its result if it had finished. Errors Cancelled, Timeout and ResourceExhausted SHOULD carry their data (see `x-hvplug-errors`); a host accepts them without.',
  },
  {
    id: 'directories',
    text: '`stateDir` and `runtimeDir` are the plugin\'s own (`<host dir>/<plugin name>`, shared by all processes of that plugin, per-VM isolation included): a plugin MUST keep its files under them, named so that two of its processes do not collide (e.g. by vmId). `stateDir` survives a plugin restart; `runtimeDir` holds sockets, pidfiles and VM logs.',
  },
  {
    id: 'exit',
    text: 'A plugin MUST exit on `exit`, and on EOF of stdin, leaving its VMs running: `shutdown` only releases control connections.',
  },
];

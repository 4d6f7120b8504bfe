// A plugin that sends its host VM events at a steady rate (FLOOD_RATE per second, default just under the host's
// notification budget) once a VM starts, alternating paused and resumed: each one changes the VM's status, so
// each costs the host a schema check, listeners and a record write. The event-flood figure runs it.
import { servePlugin, type Session } from 'hvplug/plugin-sdk';

const rate = Number(process.env.FLOOD_RATE ?? 1_900);
const TICK_MS = 10;

function flood(session: Session, vmId: string): void {
  let sent = 0;
  const t0 = performance.now();
  setInterval(() => {
    const due = Math.floor(((performance.now() - t0) / 1000) * rate);
    for (; sent < due; sent++) session.emit({ vmId, type: sent % 2 ? 'resumed' : 'paused' });
  }, TICK_MS);
}

servePlugin({
  info: { name: 'event-flooder', version: '1.0.0', vendor: 'hvplug bench' },
  capabilities: {},
  handlers: {
    'vm/create': () => ({ status: 'created' }),
    'vm/start': ({ vmId }, ctx) => {
      flood(ctx.session, vmId);
      return { status: 'running' };
    },
  },
});

import { NotSupportedError, type ShimVm } from 'hvplug';
import { GATED_METHODS, methodDef, type ResultOf } from 'hvplug/protocol';
import { expect, expectRejection, fail, type CheckDef } from '../check.js';
import type { Fixture } from '../fixture.js';
import { caseOf, type GatedMethod, type MethodCase, type Prepared } from '../method-cases.js';

/**
 * The valid params with the vmId bound, as they go on the wire. A new VM's fresh id is tracked at once,
 * since a plugin may create the VM even when the call fails; an id the preparation chose (vm/recover's)
 * belongs to a VM the preparation already tracks.
 */
function fullParams(fx: Fixture, method: GatedMethod, prepared: Prepared<GatedMethod>): Record<string, unknown> {
  const params = prepared.params as Record<string, unknown>;
  const scope = methodDef(method).scope;
  if (scope === 'vm') return { ...params, vmId: (prepared.vm as ShimVm).id };
  if (scope === 'new-vm' && params.vmId === undefined) {
    const vmId = fx.newVmId();
    fx.track(vmId);
    return { ...params, vmId };
  }
  return params;
}

/** Makes the call through the shim: params validated, capabilities checked, the result held to its schema. */
async function callValid(fx: Fixture, method: GatedMethod, c: MethodCase<GatedMethod>, prepared: Prepared<GatedMethod>): Promise<ResultOf<GatedMethod>> {
  if (c.call) return c.call(fx, prepared);
  const full = fullParams(fx, method, prepared);
  const scope = methodDef(method).scope;
  if (scope === 'new-vm') {
    const vm = await fx.hv.bringUp(method as 'vm/create' | 'vm/restore' | 'vm/recover', full, fx.opts(method));
    // A recovered VM now lives in this process: deleted here, before its old process's tracking runs.
    if ((prepared.params as { vmId?: string }).vmId !== undefined) fx.track(vm.id);
    prepared.vm = vm;
    return { status: vm.status, state: vm.state } as ResultOf<GatedMethod>;
  }
  return fx.hv.invoke(method, full, fx.opts(method), scope === 'vm' ? prepared.vm : undefined);
}

function validCheck(method: GatedMethod): CheckDef {
  const c = caseOf(method);
  return {
    id: `method.${method}.valid`,
    title: `${method} works with valid input`,
    verifies: `${method}: ${methodDef(method).summary} The answer matches the method table's result schema.`,
    needs: [method, ...c.needs],
    run: async (fx) => {
      const prepared = await c.prepare(fx);
      const result = await callValid(fx, method, c, prepared);
      await c.verify?.(result, fx, prepared);
    },
  };
}

function invalidCheck(method: GatedMethod): CheckDef {
  const c = caseOf(method);
  return {
    id: `method.${method}.invalid`,
    title: `${method} rejects invalid params with InvalidParams`,
    verifies: `The plugin validates ${method}'s params against the method table itself, not trusting the host's shim.`,
    needs: [method, ...c.needs],
    run: async (fx) => {
      const prepared = await c.prepare(fx);
      const bad = c.invalid(fullParams(fx, method, prepared));
      // The suite's own sanity: the params it calls invalid really are.
      expect(!methodDef(method).params.safeParse(bad).success, `suite error: the invalid params for ${method} pass the schema`);
      await expectRejection(fx.rawInvalid(method, bad), 'InvalidParams', `${method} with ${JSON.stringify(bad)}`);
    },
  };
}

function refusedCheck(method: GatedMethod): CheckDef {
  const c = caseOf(method);
  return {
    id: `method.${method}.refused`,
    title: `${method}, not advertised, is refused with NotSupported`,
    verifies:
      'Capabilities are honest: a method the plugin does not advertise is refused by the plugin itself, not only by the shim. ' +
      'A plugin that does not know the method at all (written before the table had it) may answer MethodNotFound, as JSON-RPC ' +
      'says: a gated method added to the protocol does not make older plugins fail.',
    run: async (fx) => {
      const params: Record<string, unknown> = { ...(c.offline(fx) as Record<string, unknown>) };
      if (methodDef(method).scope !== 'plugin') params.vmId = fx.newVmId();
      // Should the plugin do it anyway, the VM must not outlive the check.
      if (methodDef(method).scope === 'new-vm') fx.track(params.vmId as string);
      // The shim refuses from the capabilities alone, sending nothing...
      const sent = fx.run.wire.records.length;
      const local = await fx.hv.invoke(method, params, fx.opts(method)).then(() => undefined, (err: unknown) => err);
      if (!(local instanceof NotSupportedError && local.local) || fx.run.wire.records.length !== sent) {
        fail(`host error: the shim did not refuse ${method} locally from the capabilities`);
      }
      // ...and the plugin refuses too, for hosts that do not check.
      await expectRejection(fx.raw(method, params), ['NotSupported', 'MethodNotFound'], `${method} (not advertised)`);
    },
  };
}

/**
 * Three checks per gated method, from the table and the capabilities: an advertised method works and
 * validates its params; an unadvertised one is refused (and its working checks are skipped, saying why).
 */
export function methodChecks(advertised: readonly string[]): CheckDef[] {
  return GATED_METHODS.flatMap((m) => {
    const method = m as GatedMethod;
    if (advertised.includes(method)) return [validCheck(method), invalidCheck(method)];
    return [validCheck(method), invalidCheck(method), refusedCheck(method)];
  });
}

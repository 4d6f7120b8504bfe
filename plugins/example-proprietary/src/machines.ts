/**
 * The simulated machine types. `micro` stands for a minimal machine without hotplug (like QEMU's
 * microvm): the capabilities say so, and the plugin refuses hotplug on it too, for hosts that do not
 * check capabilities.
 */
export const MACHINES = {
  standard: { hotplug: true },
  micro: { hotplug: false },
} as const;

export type Machine = keyof typeof MACHINES;
export const DEFAULT_MACHINE: Machine = 'standard';

export function isMachine(name: string): name is Machine {
  return Object.hasOwn(MACHINES, name);
}

export function hotpluggable(machine: string | undefined): boolean {
  return machine === undefined || !isMachine(machine) || MACHINES[machine].hotplug;
}

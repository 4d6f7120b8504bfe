// The guest's /init, a busybox shell script. Kept apart from the archive code because its text is part
// of the initramfs cache key: editing it here rebuilds every cached initramfs.

/** Printed on the guest console once modules are loaded, before the caller's script runs. */
export const GUEST_READY_MARKER = 'HVPLUG-GUEST-READY';
/** Printed when the ACPI power button (QEMU's system_powerdown) makes the guest power off. */
export const GUEST_POWER_BUTTON_MARKER = 'HVPLUG-GUEST-POWER-BUTTON';
/** Printed with the script's exit status just before the guest powers off. */
export const GUEST_EXIT_MARKER = 'HVPLUG-GUEST-EXIT';
/** Where the caller's script lives in the guest (see guestScriptInitrd). */
export const GUEST_SCRIPT_PATH = '/hvplug/run';
/** The module load order, one "name relative-path" line each. */
export const GUEST_MODULE_LIST = '/etc/hvplug/modules';

// Modules are loaded in the order of the list, dependencies first: busybox insmod resolves nothing.
// On microvm the virtio-mmio transports are found through ACPI (the machine runs with acpi=on): the
// Debian kernel lacks VIRTIO_MMIO_CMDLINE_DEVICES, so virtio_mmio.device= on the command line is ignored.
// With no script, an interactive shell on the console (cttyhack gives it job control).
// Nothing in the guest answers the ACPI power button by itself (no acpid, no systemd-logind): a reader on
// the button's input device powers off at its first event, so vm/stop's graceful path ends the guest.
// poweroff -f needs ACPI (without it the guest halts and QEMU keeps running), which is why both machine
// types run with ACPI; reboot -f only runs if poweroff itself failed, and ends QEMU under -no-reboot.
export const GUEST_INIT = `#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
while read -r name path; do
  insmod "/lib/modules/$path" || echo "hvplug-init: insmod $name failed"
done < ${GUEST_MODULE_LIST}
for ev in /sys/class/input/event*; do
  [ "$(cat "$ev/device/name" 2>/dev/null)" = "Power Button" ] || continue
  (head -c 1 "/dev/input/\${ev##*/}" >/dev/null && echo ${GUEST_POWER_BUTTON_MARKER} && sync && poweroff -f) &
done
hostname hvplug-guest
echo ${GUEST_READY_MARKER}
if [ -x ${GUEST_SCRIPT_PATH} ]; then
  ${GUEST_SCRIPT_PATH}
else
  setsid cttyhack sh
fi
echo "${GUEST_EXIT_MARKER} $?"
sync
poweroff -f
sleep 2
reboot -f
`;

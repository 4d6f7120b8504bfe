// Stands in for a plugin process: starts an idle QEMU through startQemu, prints its pid as one JSON
// line, and keeps running until killed. Bundled and run by plugins/qemu/test/integration/qemu-qmp.test.ts.
import { buildQemuArgs } from '../src/cmdline.js';
import { startQemu } from '../src/process.js';

const runDir = process.argv[2];
if (runDir === undefined) throw new Error('usage: starter <runDir>');
const args = buildQemuArgs({
  machine: 'q35',
  accel: 'tcg',
  vcpus: { boot: 1 },
  memory: { sizeMiB: 64 },
  qmpSocket: 'qmp.sock',
  console: { kind: 'none' },
  paused: true,
});
const vm = await startQemu({ args, runDir, qmpSocket: 'qmp.sock' });
process.stdout.write(`${JSON.stringify({ pid: vm.pid })}\n`);
// Holds the QMP connection like a live plugin would, until SIGKILL.
setInterval(() => undefined, 1 << 30);

// The building blocks of the QEMU plugin, in one place for the plugin's entry point and its test
// support. (Nothing here is hvplug host code: these modules import only node builtins and zod.)
export * from './src/accel.js';
export * from './src/cmdline.js';
export * from './src/console-log.js';
export * from './src/cpio.js';
export * from './src/initramfs.js';
export * from './src/kernel-modules.js';
export * from './src/process.js';
export * from './src/qmp.js';
export * from './src/qmp-schema.js';

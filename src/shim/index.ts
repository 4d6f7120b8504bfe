export { ShimHypervisor, ShimVm } from './shim.js';
export type { CallOpts, HypervisorApi, ShimOptions, VmApi, VmRecordUpdate } from './shim.js';
export type { PluginChannel, ChannelCallOptions } from './channel.js';
export type { InterceptedCall, Interceptor } from './interceptors.js';

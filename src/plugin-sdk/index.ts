export { servePlugin } from './serve.js';
export type { CallContext, EventInput, ExtensionHandler, Handler, Handlers, PluginDefinition, ServeOptions, ServedPlugin, Session } from './serve.js';
export { PluginError, errors } from './errors.js';
export { stateCodec, type StateCodec } from './state.js';
export type { Logger } from 'pino';

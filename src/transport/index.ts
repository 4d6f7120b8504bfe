export * from './framing.js';
export * from './stream-transport.js';

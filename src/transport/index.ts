export * from './framing.js';
export * from './frame-stream.js';
export * from './stream-transport.js';
export * from './address.js';
export * from './socket.js';

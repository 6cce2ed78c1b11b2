/** The laptop<->gateway serial link (docs/protocol.md §3, §4). */
export * from './constants.ts';
export * from './cobs.ts';
export * from './frame.ts';
export * from './parser.ts';
export * from './arq.ts';
export * from './keepalive.ts';

export * from './hours.js';
export * from './usage.events.js';
export * from './usage.codec.js';
export * from './usage-hour.js';
export * from './allowance.js';

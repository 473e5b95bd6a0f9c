export * from './notification.events.js';
export * from './notification.state.js';
export * from './notification.decide.js';

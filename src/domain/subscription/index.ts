export * from './subscription.events.js';
export * from './subscription.state.js';
export * from './subscription.decide.js';

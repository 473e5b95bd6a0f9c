export * from './subscription.events.js';
export * from './subscription.state.js';
export * from './subscription.decide.js';
export * from './subscription.codec.js';
export * from './change-request.js';
export * from './converge.js';

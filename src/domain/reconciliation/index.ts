export * from './reconciliation.events.js';
export * from './reconciliation.state.js';
export * from './reconciliation.decide.js';
export * from './reconciliation.index.js';
export * from './reconciliation.codec.js';

/** Every projection the service runs, in the order they are applied within a transaction. */
import type { Projection } from '../projection.js';
import { metricsProjection } from './metrics.projection.js';
import { operationsProjection } from './operations.projection.js';
import { subscriptionsProjection } from './subscriptions.projection.js';
// Metered billing (finance's usage read model)
import { usageProjection } from './usage.projection.js';

export { metricsProjection, operationsProjection, subscriptionsProjection, usageProjection };

export const allProjections: readonly Projection[] = [subscriptionsProjection, operationsProjection, metricsProjection, usageProjection];

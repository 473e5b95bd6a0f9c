/**
 * The settings of the ISV integration (outbound integration events and provisioning calls): the
 * `integration` section of the service's Config, read and checked in src/config.ts with the rest of
 * the environment. Without PROVISIONING_WEBHOOK_URL there is no integration: provisioning succeeds at
 * once and no integration event is recorded or sent (the local sandbox).
 *
 * `integrationSettings(env)` reads that section alone from PROVISIONING_* and INTEGRATION_MAX_ATTEMPTS
 * (tests, tools); it throws the same ConfigError as the service's start-up would.
 */
export type { IntegrationConfig as IntegrationSettings } from '../config.js';
export { loadIntegrationConfig as integrationSettings } from '../config.js';

/**
 * The environment variables of the ISV integration, as TypeBox properties to spread into the
 * service's EnvSchema (src/config.ts). No imports of ours: config.ts can import it without a cycle.
 * The checks that span variables (a secret required with the URL) are in settings.ts.
 */
import Type from 'typebox';

export const IntegrationEnvSchema = {
  PROVISIONING_WEBHOOK_URL: Type.Optional(
    Type.String({ minLength: 1, description: "The ISV application's endpoint for integration events and provisioning requests (https)" }),
  ),
  PROVISIONING_WEBHOOK_SECRET: Type.Optional(
    Type.String({ minLength: 32, description: 'HMAC-SHA256 signing secret; several, comma-separated, while rotating (each signs)' }),
  ),
  PROVISIONING_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 120_000, default: 10_000, description: 'How long to wait for the ISV\'s 2xx' }),
  INTEGRATION_MAX_ATTEMPTS: Type.Integer({ minimum: 1, maximum: 1000, default: 40, description: 'Delivery attempts before an integration event is dead-lettered' }),
};

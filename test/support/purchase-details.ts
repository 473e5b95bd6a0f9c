/** Microsoft's details of one purchase as the tests record it (plan standard, 5 seats, a test purchase). */
import type { SubscriptionDetails } from '../../src/domain/subscription/index.js';

export function purchaseDetails(subscriptionId: string, overrides: Partial<SubscriptionDetails> = {}): SubscriptionDetails {
  return {
    subscriptionId,
    name: 'Contoso ledger',
    publisherId: 'fabrikam',
    offerId: 'ledger-saas',
    planId: 'standard',
    quantity: 5,
    purchaser: { emailId: 'buyer@contoso.example', tenantId: '0b5c6d1e-2f3a-4b4c-8d5e-6f7a8b9c0d1e' },
    beneficiary: { emailId: 'user@contoso.example', tenantId: '0b5c6d1e-2f3a-4b4c-8d5e-6f7a8b9c0d1e', puid: null },
    term: { termUnit: 'P1M', startDate: '2026-03-01T00:00:00Z', endDate: '2026-03-31T00:00:00Z' },
    autoRenew: true,
    isFreeTrial: false,
    isTest: true,
    allowedCustomerOperations: ['Read', 'Update', 'Delete'],
    created: '2026-03-01T08:59:12Z',
    ...overrides,
  };
}

/** Spec-conformant sample payloads for client tests (field names as in saasapi.v2.json). */
export const SUB_ID = '37f9dea2-4345-438f-b0bd-03d40d28c7e0';
export const OP_ID = '529f53e4-8a4e-4d4d-8d4f-2f8c1d4c4a11';
export const CORRELATION_ID = 'a1b2c3d4-0000-4000-8000-000000000001';
export const TENANT_ID = '7f5a2a51-0c6c-4f55-9d0a-5d2b8b8c0e21';
export const CLIENT_ID = 'b8ce2d7b-9a5a-4a3e-8b6e-6a3d3d6f9a10';

export function subscription(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: SUB_ID,
    publisherId: 'contoso',
    offerId: 'ledger-saas',
    name: 'Contoso ledger',
    saasSubscriptionStatus: 'Subscribed',
    beneficiary: {
      emailId: 'alice@contoso.example',
      objectId: 'e2f4b1d4-5b73-4b84-9a0e-3f6f3a8a8c01',
      tenantId: TENANT_ID,
      puid: '1003BFFD8A1E2B3C',
    },
    purchaser: {
      emailId: 'bob@contoso.example',
      objectId: 'e2f4b1d4-5b73-4b84-9a0e-3f6f3a8a8c02',
      tenantId: TENANT_ID,
      puid: '1003BFFD8A1E2B3D',
    },
    planId: 'standard',
    quantity: 5,
    term: { termUnit: 'P1M', startDate: '2026-01-01T00:00:00Z', endDate: '2026-01-31T00:00:00Z' },
    autoRenew: true,
    isTest: false,
    isFreeTrial: false,
    allowedCustomerOperations: ['Read', 'Update', 'Delete'],
    sandboxType: 'None',
    sessionMode: 'None',
    created: '2026-01-01T00:00:00Z',
    ...overrides,
  };
}

export function resolved(): Record<string, unknown> {
  return {
    id: SUB_ID,
    subscriptionName: 'Contoso ledger',
    offerId: 'ledger-saas',
    planId: 'standard',
    quantity: 5,
    subscription: subscription({ saasSubscriptionStatus: 'PendingFulfillmentStart' }),
  };
}

export function plans(): Record<string, unknown> {
  return {
    plans: [
      {
        planId: 'standard',
        displayName: 'Standard',
        isPrivate: false,
        description: 'Per seat',
        minQuantity: 1,
        maxQuantity: 50,
        hasFreeTrials: false,
        isPricePerSeat: true,
        isStopSell: false,
        market: 'US',
        planComponents: {
          recurrentBillingTerms: [
            {
              currency: 'USD',
              price: 9,
              termUnit: 'P1M',
              termDescription: 'Monthly',
              meteredQuantityIncluded: [{ dimensionId: 'api-calls', units: '100' }],
            },
          ],
          meteringDimensions: [
            { id: 'api-calls', currency: 'USD', pricePerUnit: 0.5, unitOfMeasure: 'per 1000', displayName: 'API calls' },
          ],
        },
        sourceOffers: [{ externalId: '9b1d5f9c-1a1a-4a4a-8a8a-1b1b1b1b1b1b' }],
      },
    ],
  };
}

export function operation(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: OP_ID,
    activityId: '0b9e2c1a-7d7a-4c4c-9e9e-2a2a2a2a2a2a',
    subscriptionId: SUB_ID,
    offerId: 'ledger-saas',
    publisherId: 'contoso',
    planId: 'gold',
    quantity: 5,
    action: 'ChangePlan',
    timeStamp: '2026-02-10T18:48:58.4449937Z',
    status: 'InProgress',
    ...overrides,
  };
}

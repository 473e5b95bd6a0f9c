/**
 * Refresh what Microsoft owns, end to end (issue 9 item 2): after a customer moves from a monthly plan to a yearly
 * one, Microsoft's subscription has a new term; the ledger, the operator API and the read model take it over.
 */
import t from 'tap';
import { detailsFromMicrosoft } from '../../src/application/subscription-details.js';
import { startSandbox } from '../support/sandbox.js';
import { waitFor } from '../support/wait.js';

t.test('a monthly-to-yearly plan change moves the term here too', async (t) => {
  const s = await startSandbox(t);
  const bought = s.emulator.marketplace.purchase({ planId: 'standard', quantity: 5 });
  const id = bought.subscription.id;
  const sub = await s.marketplace.getSubscription(id);
  await s.ledger.execute(id, { type: 'RecordPurchase', now: new Date().toISOString(), source: 'landing', subscription: detailsFromMicrosoft(sub), microsoftStatus: 'PendingFulfillmentStart' }, { actor: 'test' });
  await s.ledger.execute(id, { type: 'RequestActivation', now: new Date().toISOString(), source: 'landing', contact: { email: 'buyer@contoso.example' } }, { actor: 'test' });
  await waitFor('activation', async () => (await s.ledger.load(id)).state.status === 'Subscribed');
  const monthly = await s.ledger.load(id);
  t.match(monthly.state, { term: { termUnit: 'P1M' } }, 'monthly to begin with');

  s.emulator.marketplace.changePlan(id, 'premium');
  await waitFor('Microsoft to complete the plan change', () => s.emulator.state.subscription(id).planId === 'premium' && s.emulator.state.pendingOperations(id).length === 0, 20_000);
  const atMicrosoft = s.emulator.state.subscription(id);
  t.equal(atMicrosoft.termUnit, 'P1Y', 'Microsoft moved the term to yearly');
  const refreshed = await waitFor('the yearly term here', async () => {
    const { state } = await s.ledger.load(id);
    return state.status !== 'Initial' && state.term.termUnit === 'P1Y' ? state : undefined;
  }, 20_000);
  t.equal(refreshed.planId, 'premium');
  t.equal(refreshed.term.endDate?.slice(0, 10), atMicrosoft.endDate?.toISOString().slice(0, 10), "the end date is Microsoft's");
  const { events } = await s.ledger.load(id);
  const refresh = events.find((e) => e.type === 'DetailsRefreshed');
  t.match(refresh?.data, { source: 'process', changes: { term: { termUnit: 'P1Y' } }, previous: { term: { termUnit: 'P1M' } }, reported: { planId: 'premium', status: 'Subscribed' } }, 'recorded with the old and new values and what Microsoft reported');
  const res = await fetch(`${s.url}/api/subscriptions/${id}`, { headers: { authorization: `Bearer ${s.operatorToken}` } });
  t.match(await res.json(), { term: { termUnit: 'P1Y' } }, 'the operator API shows it');
  await waitFor('the read model to show it', async () => {
    const r = await fetch(`${s.url}/api/read/subscriptions?limit=5`, { headers: { authorization: `Bearer ${s.operatorToken}` } });
    const body = (await r.json()) as { items: Array<{ subscriptionId: string; term: { termUnit: string | null } }> };
    return body.items.find((i) => i.subscriptionId === id)?.term.termUnit === 'P1Y';
  }, 20_000);
  t.pass('the read model shows the yearly term');
});

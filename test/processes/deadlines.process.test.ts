/**
 * The deadline warner over the real read models (a SQLite store, the projection runner): one warn line
 * per item entering warning or overdue, not one per check; an info line when it is resolved; its timer
 * checks on its own; nothing is read while the read models are not live.
 */
import t from 'tap';
import { CredentialHealth } from '../../src/marketplace/credential-health.js';
import { liveDeadlines, startDeadlineWarner } from '../../src/processes/deadlines.process.js';
import type { RunningProjections } from '../../src/projections/runner.js';
import { defaultDeadlineSettings } from '../../src/projections/views/deadlines.js';
import { captureLogger } from '../support/scripted-server.js';
import { DAY, T0, at, deadlinesWorld, purchased } from '../support/deadlines-world.js';
import { waitFor } from '../support/wait.js';

const A = '11111111-1111-4111-8111-111111111111';
const B = '22222222-2222-4222-8222-222222222222';
const OP = '33333333-3333-4333-8333-333333333333';

const { logger, lines } = captureLogger();
const warnings = () => lines.filter((l) => l.component === 'deadlines' && l.level === 40);
const resolvedLines = () => lines.filter((l) => l.component === 'deadlines' && l.msg === 'deadline resolved');

t.test('once per item and severity, resolved once, across many checks', async (t) => {
  const world = await deadlinesWorld(t, logger);
  await world.subscription(A, { type: 'RecordPurchase', now: at(0), source: 'landing', subscription: purchased(A), microsoftStatus: 'PendingFulfillmentStart' });
  await world.subscription(B, { type: 'RecordPurchase', now: at(0), source: 'landing', subscription: purchased(B), microsoftStatus: 'PendingFulfillmentStart' });
  await world.subscription(B, { type: 'RequestActivation', now: at(60_000), source: 'landing', contact: { email: 'it@contoso.example' } });
  await world.deliver({ id: OP, subscriptionId: B, action: 'ChangePlan', planId: 'premium', status: 'InProgress', operationRequestSource: 'Azure' }, 2 * 60_000);
  let now = new Date(T0 + 20 * 60_000);
  const health = new CredentialHealth({ kind: 'secret', now: () => now });
  health.recordRejected({ call: 'getSubscription', status: 403, message: '403 Forbidden' });

  const warner = startDeadlineWarner({ read: liveDeadlines(() => world.runner, () => health.snapshot(), defaultDeadlineSettings), logger, intervalMs: 0, now: () => now });
  t.teardown(() => warner.stop());

  const first = (await warner.check());
  t.same(first?.map((d) => `${d.key}:${d.severity}`), [`acknowledgement:${OP}:overdue`, 'credential:rejected:warning', `activation:${B}:warning`]);
  for (let i = 0; i < 5; i++) t.same((await warner.check()), [], `check ${i + 2}: nothing new`);
  t.equal(warnings().length, 3, 'three warn lines after six checks');
  t.match(warnings()[0], {
    key: `acknowledgement:${OP}`,
    kind: 'acknowledgement',
    severity: 'overdue',
    subscriptionId: B,
    operationId: OP,
    deadline: at(2 * 60_000 + 10_000),
    timeLeft: 'overdue by 17m 50s',
    action: /notification process/,
    msg: /^deadline overdue: ChangePlan to plan premium/,
  });
  t.match(warnings()[2], { key: `activation:${B}`, subscriptionId: B, severity: 'warning', msg: /^deadline warning: activation requested/ });

  health.recordRejected({ call: 'listOperations', status: 403, message: '403 Forbidden' });
  health.recordRejected({ call: 'listOperations', status: 403, message: '403 Forbidden' });
  now = new Date(T0 + 24 * DAY);
  t.same((await warner.check())?.map((d) => `${d.key}:${d.severity}`), ['credential:rejected:overdue', `pending-purchase:${A}:warning`], 'entering overdue, entering warning: one line each');
  t.same((await warner.check()), []);

  await world.notification(OP, { type: 'AcknowledgeOperation', status: 'Success', now: at(21 * 60_000) });
  await world.subscription(B, { type: 'ConfirmActivation', now: at(22 * 60_000), source: 'process' });
  health.recordAccepted();
  t.same((await warner.check()), []);
  t.same(resolvedLines().map((l) => l.key).sort(), [`acknowledgement:${OP}`, `activation:${B}`, 'credential:rejected']);
  t.same((await warner.check()), []);
  t.equal(resolvedLines().length, 3, 'resolved once');
  t.equal(warnings().length, 5, 'five warn lines in all');
});

t.test('the timer checks on its own; nothing is read while the read models are not live', async (t) => {
  const world = await deadlinesWorld(t, logger);
  await world.subscription(A, { type: 'RecordPurchase', now: at(0), source: 'landing', subscription: purchased(A, at(-40 * DAY)), microsoftStatus: 'PendingFulfillmentStart' });
  let live = false;
  const readModels = (): RunningProjections | undefined => (live ? world.runner : undefined);
  const before = warnings().length;
  const warner = startDeadlineWarner({ read: liveDeadlines(readModels, () => undefined, defaultDeadlineSettings), logger, intervalMs: 25 });
  t.teardown(() => warner.stop());
  t.equal((await warner.check()), undefined, 'no read models: the check is skipped');
  const catchingUp: RunningProjections = { ...world.runner, status: () => world.runner.status().map((s) => ({ ...s, state: 'catching-up' as const })) };
  t.equal(await liveDeadlines(() => catchingUp, () => undefined, defaultDeadlineSettings)(new Date()), undefined, 'catching up: skipped');
  live = true;
  const line = await waitFor('the timer to warn about the overdue purchase', () => warnings().slice(before).find((l) => l.key === `pending-purchase:${A}`), 20_000);
  t.match(line, { severity: 'overdue', subscriptionId: A });
  t.equal(warnings().slice(before).length, 1);
});

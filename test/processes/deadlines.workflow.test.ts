/** The deadline warner's pure decision, and the pure deadline view it reads: once per item and severity, bounded memory. */
import t from 'tap';
import { CredentialHealth } from '../../src/marketplace/credential-health.js';
import { deadlinesAt, defaultDeadlineSettings, formatTimeLeft } from '../../src/projections/views/deadlines.js';
import type { Deadline, Severity } from '../../src/projections/views/deadlines.js';
import { decideWarnings, emptyWarnerMemory } from '../../src/processes/deadlines.workflow.js';
import type { WarnerMemory } from '../../src/processes/deadlines.workflow.js';

const NOW = '2026-03-10T00:00:00.000Z';

function deadline(key: string, severity: Severity): Deadline {
  return {
    key,
    kind: 'pending-purchase',
    subscriptionId: key,
    since: NOW,
    deadline: NOW,
    timeLeftMs: 0,
    severity,
    summary: key,
    action: 'act',
    rule: 'rule',
    activation: null,
    operation: null,
    credential: null,
  };
}

/** Runs ticks; returns the keys warned at each. */
function ticks(lists: Deadline[][], limit?: number): { warned: string[][]; resolved: string[][]; overflow: Array<number | undefined>; memory: WarnerMemory } {
  let memory = emptyWarnerMemory;
  const warned: string[][] = [];
  const resolved: string[][] = [];
  const overflow: Array<number | undefined> = [];
  for (const items of lists) {
    const d = decideWarnings(items, memory, limit);
    memory = d.memory;
    warned.push(d.warn.map((w) => `${w.key}:${w.severity}`));
    resolved.push(d.resolved);
    overflow.push(d.overflow);
  }
  return { warned, resolved, overflow, memory };
}

t.test('one warning per item entering warning, one more entering overdue; info never', async (t) => {
  const r = ticks([
    [deadline('a', 'info'), deadline('b', 'warning')],
    [deadline('a', 'info'), deadline('b', 'warning')],
    [deadline('a', 'warning'), deadline('b', 'warning')],
    [deadline('a', 'warning'), deadline('b', 'overdue')],
    [deadline('a', 'warning'), deadline('b', 'overdue')],
    [deadline('a', 'overdue'), deadline('b', 'warning')], // b back to warning: it was warned at its worst already
  ]);
  t.same(r.warned, [['b:warning'], [], ['a:warning'], ['b:overdue'], [], ['a:overdue']]);
  t.same([...r.memory.warned], [['a', 'overdue'], ['b', 'overdue']]);
});

t.test('a resolved item is forgotten and reported; opening again warns again', async (t) => {
  const r = ticks([[deadline('a', 'overdue')], [], [deadline('a', 'overdue')], [deadline('a', 'info')]]);
  t.same(r.warned, [['a:overdue'], [], ['a:overdue'], []]);
  t.same(r.resolved, [[], ['a'], [], []], 'an item still listed (even as info) is not resolved');
  t.same([...r.memory.warned], [], 'info items are not remembered');
});

t.test('memory is bounded: beyond the limit items are counted, the count reported when it changes', async (t) => {
  const many = (n: number) => Array.from({ length: n }, (_, i) => deadline(`k${i}`, 'overdue'));
  const r = ticks([many(5), many(5), many(6), many(2)], 3);
  t.same(r.warned, [['k0:overdue', 'k1:overdue', 'k2:overdue'], [], [], []]);
  t.same(r.overflow, [2, undefined, 3, 0]);
  t.equal(r.memory.warned.size, 2);
  t.same(r.resolved[3], ['k2'], 'a remembered item no longer listed is resolved');
});

t.test('the credential: a warning at the first rejection, overdue at the configured count; a certificate by its notAfter', async (t) => {
  const health = new CredentialHealth({ kind: 'certificate', now: () => new Date(NOW) });
  const at = (days: number) => new Date(Date.parse(NOW) + days * 86_400_000);
  health.setCertificate({ notAfter: at(40).toISOString(), notBefore: at(-325).toISOString(), subject: 'CN=app', thumbprintSha256: 'ab'.repeat(32) });
  const view = (now: Date) => deadlinesAt({ pending: [], unacknowledged: [], credential: health.snapshot() }, now, defaultDeadlineSettings).map((d) => [d.key, d.severity]);
  const cert = `credential:certificate:${'ab'.repeat(32)}`;
  t.same(view(at(0)), [[cert, 'info']]);
  t.same(view(at(11)), [[cert, 'warning']], 'inside the 30-day lead');
  t.same(view(at(41)), [[cert, 'overdue']]);

  health.recordRejected({ call: 'token', message: 'AADSTS7000222: the secret expired' });
  t.same(view(at(0)), [['credential:rejected', 'warning'], [cert, 'info']]);
  health.recordRejected({ call: 'getSubscription', status: 401, message: '401 Unauthorized' });
  health.recordRejected({ call: 'getSubscription', status: 401, message: '401 Unauthorized' });
  t.same(view(at(0))[0], ['credential:rejected', 'overdue'], `${defaultDeadlineSettings.credentialRejections} in a row`);
  health.recordTokenUnavailable('login.microsoftonline.com unreachable');
  t.equal(health.snapshot().consecutiveRejections, 3, 'Entra unreachable is not a rejection');
  health.recordAccepted();
  t.same(view(at(0)), [[cert, 'info']], 'accepted: the rejection item is gone');
});

t.test('time left, as people read it', async (t) => {
  t.equal(formatTimeLeft(5 * 86_400_000 + 3 * 3_600_000 + 59_000), '5d 3h');
  t.equal(formatTimeLeft(2 * 3_600_000 + 5 * 60_000), '2h 05m');
  t.equal(formatTimeLeft(4 * 60_000 + 10_000), '4m 10s');
  t.equal(formatTimeLeft(12_400), '12s');
  t.equal(formatTimeLeft(-(3 * 3_600_000 + 2 * 60_000)), 'overdue by 3h 02m');
});

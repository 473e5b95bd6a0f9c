/**
 * The held-events operator API as the service serves it (runtime.ts wiring): the whole sandbox over real HTTP,
 * listing its process managers with their runner mode, behind the operator token.
 */
import t from 'tap';
import { startSandbox } from '../support/sandbox.js';

t.test('GET /api/processes lists the running process managers; /api/processes/parked answers problem+json without the token', async (t) => {
  const s = await startSandbox(t);
  await s.processes()?.idle();
  const auth = { authorization: `Bearer ${s.operatorToken}` };

  const res = await fetch(`${s.url}/api/processes`, { headers: auth });
  t.equal(res.status, 200);
  const body = (await res.json()) as { processes: Array<{ name: string; mode: string; parked: number; retrying: number }> };
  t.same(
    body.processes.map((p) => [p.name, p.mode, p.parked, p.retrying]),
    [
      ['activation', 'lease', 0, 0],
      ['notifications', 'lease', 0, 0],
      ['refresh', 'lease', 0, 0],
      ['metering', 'lease', 0, 0],
    ],
    'the process managers of the sandbox (no integration events without PROVISIONING_WEBHOOK_URL)',
  );

  const parked = await fetch(`${s.url}/api/processes/parked`, { headers: auth });
  t.same(await parked.json(), { parked: [], retrying: [] });

  const anonymous = await fetch(`${s.url}/api/processes/parked`);
  t.equal(anonymous.status, 401);
  t.match(anonymous.headers.get('content-type'), /application\/problem\+json/);

  const unknown = await fetch(`${s.url}/api/processes/activation/parked/subscription-x/retry`, { method: 'POST', headers: auth });
  t.equal(unknown.status, 404);
  t.match(await unknown.json(), { title: 'key-not-held' });
});

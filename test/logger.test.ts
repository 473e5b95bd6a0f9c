import { Writable } from 'node:stream';
import t from 'tap';
import Fastify from 'fastify';
import { pino } from 'pino';
import { loggerOptions, safeUrl } from '../src/logger.js';

t.test('safeUrl hides secret query values and keeps the rest', async (t) => {
  t.equal(safeUrl('/landing?token=ab%2Bcd'), '/landing?token=[redacted]');
  t.equal(safeUrl('/landing/subscriptions/1?sig=xyz&x=1'), '/landing/subscriptions/1?sig=[redacted]&x=1');
  t.equal(safeUrl('/api/read/subscriptions?status=Subscribed'), '/api/read/subscriptions?status=Subscribed');
  t.equal(safeUrl('/healthz'), '/healthz');
});

t.test("request logs never carry the customer's purchase token or a bearer token", async (t) => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  const app = Fastify({ loggerInstance: pino(loggerOptions('info'), sink) });
  app.get('/landing', async () => 'ok');
  await app.inject({ url: '/landing?token=SECRET-PURCHASE-TOKEN%2B1', headers: { authorization: 'Bearer SECRET-BEARER' } });
  await app.close();
  const all = lines.join('');
  t.match(all, /incoming request/, 'the request was logged');
  t.match(all, /token=\[redacted\]/);
  t.notMatch(all, /SECRET-PURCHASE-TOKEN/);
  t.notMatch(all, /SECRET-BEARER/);
});

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

/** Runs test/fixtures/async-logger-child.ts with standard output unread until it says it logged everything. */
async function asyncLoggerChild(env: Record<string, string>): Promise<{ stdout: string; stderr: string; code: number | null }> {
  const { spawn } = await import('node:child_process');
  const { join } = await import('node:path');
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fixtures', 'async-logger-child.ts')], {
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  child.stdout.pause(); // nobody reads: the pipe fills after ~64 KiB
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    if (stderr.includes('logged ')) {
      child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
      child.stdout.resume();
      child.stdin.write('go\n');
    }
  });
  const closed = new Promise((resolve) => child.stdout.on('close', resolve));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  await closed;
  return { stdout, stderr, code };
}

t.test('the service logger does not wait for a reader that does not read: past its 16 MiB buffer lines are dropped and counted; buffered lines are written at exit', async (t) => {
  // 2,000 lines of ~1 KiB into a pipe nobody reads: a synchronous logger blocks at the first full pipe and never logs the end.
  const small = await asyncLoggerChild({ LINES: '2000', SIZE: '1000' });
  t.equal(small.code, 0);
  t.match(small.stderr, /logged 2000/, 'the child got past its logging with standard output unread');
  const lines = small.stdout.trim().split('\n').map((l) => JSON.parse(l) as { i: number; msg: string });
  t.equal(lines.length, 2001, 'every line written once the reader reads (2,000 and the last, logged just before process.exit)');
  t.same(lines.map((l) => l.i), Array.from({ length: 2001 }, (_, i) => i), 'in order');

  // 40 MiB into the unread pipe: over the 16 MiB buffer, the rest is dropped and counted, the heap does not grow with it.
  const big = await asyncLoggerChild({ LINES: '40000', SIZE: '1000' });
  t.equal(big.code, 0);
  t.match(big.stderr, /logged 40000/);
  t.match(big.stderr, /log line\(s\) dropped so far: standard output is not read as fast as the service writes/);
  const kept = big.stdout.trim().split('\n');
  t.ok(kept.length > 1000 && kept.length < 40001, `some lines kept (${kept.length}), the rest dropped`);
  t.ok(kept.every((l) => (JSON.parse(l) as { msg?: string }).msg !== undefined), 'every kept line is whole JSON');
});

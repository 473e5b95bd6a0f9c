/**
 * A proxy in front of the emulator for the crash tests: it forwards every call, and the first call that `kills`
 * picks (after Microsoft answered 200) gets no answer: `kill()` runs instead (the service SIGKILLed before it
 * hears that Microsoft accepted). Resolves with the proxy's base URL.
 */
import { createServer } from 'node:http';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Test } from 'tap';

export async function startKillingProxy(t: Test, upstream: string, kills: (req: IncomingMessage) => boolean, kill: () => void): Promise<string> {
  let killed = false;
  const proxy = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        const headers = new Headers();
        for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && k !== 'host' && k !== 'content-length') headers.set(k, v);
        const body = chunks.length ? Buffer.concat(chunks) : undefined;
        const answer = await fetch(`${upstream}${req.url}`, { method: req.method, headers, ...(body ? { body } : {}) });
        const text = await answer.text();
        if (kills(req) && !killed && answer.status === 200) {
          killed = true;
          kill(); // Microsoft has accepted; the service dies before it hears so
          res.destroy();
          return;
        }
        const out: Record<string, string> = {};
        answer.headers.forEach((v, k) => {
          if (!['content-length', 'transfer-encoding', 'connection', 'content-encoding'].includes(k)) out[k] = v;
        });
        res.writeHead(answer.status, out).end(text);
      })().catch(() => res.destroy());
    });
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => proxy.close(() => r())));
  return `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
}

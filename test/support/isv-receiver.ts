/**
 * A stand-in for the ISV's application: a real HTTP server on 127.0.0.1 that receives integration
 * events and provisioning requests, verifies each signature with the exported verifier, and
 * processes each idempotency key once (answering 200 to a repeat, as the contract asks of receivers).
 *
 * Its mode can be switched while the ledger runs: `up`, `error` (500 to everything), `down`
 * (the port is closed: connection refused), `slow` (answers after `delayMs`). `reject(…)` makes it
 * answer 500 to selected requests only (e.g. one subscription's).
 */
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Test } from 'tap';
import { verifySignature } from '../../src/integration/signing.js';

export type Receipt = {
  key: string;
  type: string;
  attempt: number;
  body: string;
  json: Record<string, unknown>;
  headers: IncomingHttpHeaders;
  /** The status the receiver answered. */
  status: number;
  verified: boolean;
  at: number;
};

export type ReceiverMode = 'up' | 'error' | 'down' | 'slow';

export type Receiver = {
  url: string;
  /** Every request that reached the receiver, in arrival order. */
  receipts: Receipt[];
  /** The first acknowledged (2xx) receipt of each idempotency key, in processing order. */
  processed: Receipt[];
  /** How many 2xx answers each idempotency key got. */
  acknowledgements(): Map<string, number>;
  mode(): ReceiverMode;
  setMode(mode: ReceiverMode, options?: { delayMs?: number }): Promise<void>;
  /** Answer 500 to the requests this selects (in `up` mode); undefined to stop. */
  reject(select: ((json: Record<string, unknown>) => boolean) | undefined): void;
  close(): Promise<void>;
};

export async function startReceiver(t: Test, secret: string, options: { toleranceSec?: number } = {}): Promise<Receiver> {
  const receipts: Receipt[] = [];
  const processed: Receipt[] = [];
  const seen = new Set<string>();
  let current: ReceiverMode = 'up';
  let delayMs = 0;
  let rejecting: ((json: Record<string, unknown>) => boolean) | undefined;

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const body = raw.toString('utf8');
      const check = verifySignature(secret, req.headers['x-ledger-signature'] as string | undefined, raw, options.toleranceSec);
      let json: Record<string, unknown> = {};
      try {
        json = JSON.parse(body) as Record<string, unknown>;
      } catch {
        // recorded as is
      }
      const key = String(req.headers['idempotency-key'] ?? '');
      const answer = (status: number) => {
        receipts.push({
          key,
          type: String(req.headers['x-ledger-event-type'] ?? ''),
          attempt: Number(req.headers['x-ledger-delivery-attempt'] ?? 0),
          body,
          json,
          headers: req.headers,
          status,
          verified: check.ok,
          at: Date.now(),
        });
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ status }));
      };
      const respond = () => {
        if (!check.ok) return answer(401);
        if (current === 'error' || rejecting?.(json)) return answer(500);
        answer(200);
        if (!seen.has(key)) {
          seen.add(key);
          processed.push(receipts[receipts.length - 1] as Receipt);
        }
      };
      if (current === 'slow') setTimeout(respond, delayMs);
      else respond();
    });
  });

  const listen = (port: number) =>
    new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve((server.address() as AddressInfo).port);
      });
    });
  const stop = () =>
    new Promise<void>((resolve) => {
      if (!server.listening) return resolve();
      server.close(() => resolve());
      server.closeAllConnections();
    });

  const port = await listen(0);
  const receiver: Receiver = {
    url: `http://127.0.0.1:${port}/ledger-events`,
    receipts,
    processed,
    acknowledgements() {
      const counts = new Map<string, number>();
      for (const r of receipts) if (r.status >= 200 && r.status < 300) counts.set(r.key, (counts.get(r.key) ?? 0) + 1);
      return counts;
    },
    mode: () => current,
    async setMode(mode, o = {}) {
      if (mode === 'down' && current !== 'down') await stop();
      if (mode !== 'down' && current === 'down') await listen(port);
      current = mode;
      delayMs = o.delayMs ?? 0;
    },
    reject(select) {
      rejecting = select;
    },
    close: stop,
  };
  t.teardown(stop);
  return receiver;
}

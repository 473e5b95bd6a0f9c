/**
 * A closed-loop HTTP/1.1 load generator that costs little CPU, so that on a 2-core machine the service and not the
 * generator is what is measured: `connections` keep-alive sockets (node:net), each sending one request, reading
 * its response (status line, headers, a Content-Length body), then sending the next. No fetch, no http.Agent:
 * node's fetch costs several times the service's own work per request; this writes a prebuilt head and parses
 * only the status and the length.
 *
 * Latency is measured from the write of a request to the end of its response; only 200s count as throughput.
 */
import { connect } from 'node:net';
import type { Socket } from 'node:net';

export type LoadOptions = {
  url: string;
  path: string;
  connections: number;
  seconds: number;
  /** Extra request headers (authorization, content-type). */
  headers: Record<string, string>;
  /** A new body for each request. */
  body: () => string;
};

export type LoadFigures = {
  requests: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  errors: number;
  statuses: Record<string, number>;
};

function percentile(sorted: Float64Array, n: number, p: number): number {
  if (n === 0) return 0;
  return sorted[Math.min(n - 1, Math.floor((p / 100) * n))] ?? 0;
}

const round = (ms: number) => Math.round(ms * 10) / 10;

/** Runs the load for `seconds` and resolves with what it saw. */
export async function runLoad(options: LoadOptions): Promise<LoadFigures> {
  const target = new URL(options.url);
  const head = [`POST ${options.path} HTTP/1.1`, `host: ${target.host}`, 'connection: keep-alive', ...Object.entries(options.headers).map(([k, v]) => `${k}: ${v}`)].join('\r\n');
  let latencies = new Float64Array(1 << 16);
  let n = 0;
  let errors = 0;
  const statuses: Record<string, number> = {};
  const started = performance.now();
  const until = started + options.seconds * 1000;
  const record = (status: number, ms: number) => {
    statuses[status] = (statuses[status] ?? 0) + 1;
    if (status !== 200) {
      errors++;
      return;
    }
    if (n === latencies.length) {
      const bigger = new Float64Array(latencies.length * 2);
      bigger.set(latencies);
      latencies = bigger;
    }
    latencies[n++] = ms;
  };
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const socket: Socket = connect({ host: target.hostname, port: Number(target.port), noDelay: true });
      let buffer: Buffer = Buffer.alloc(0);
      let sentAt = 0;
      const send = () => {
        if (performance.now() >= until) {
          socket.end();
          return resolve();
        }
        const body = options.body();
        sentAt = performance.now();
        socket.write(`${head}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      };
      // A service that does not answer at all (e.g. while it catches up) ends the run 10 s after its time, as errors.
      const hardStop = setTimeout(() => socket.destroy(new Error('no answer')), until - performance.now() + 10_000);
      socket.on('close', () => clearTimeout(hardStop));
      socket.on('connect', send);
      socket.on('data', (chunk: Buffer) => {
        buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
        const end = buffer.indexOf('\r\n\r\n');
        if (end < 0) return;
        const headText = buffer.subarray(0, end).toString('latin1');
        const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(headText)?.[1] ?? 0);
        if (buffer.length < end + 4 + length) return;
        const status = Number(headText.slice(9, 12));
        buffer = buffer.subarray(end + 4 + length);
        record(status, performance.now() - sentAt);
        send();
      });
      socket.on('error', () => {
        errors++;
        resolve();
      });
      socket.on('close', () => resolve());
    });
  await Promise.all(Array.from({ length: options.connections }, one));
  const elapsed = (performance.now() - started) / 1000;
  const sorted = latencies.subarray(0, n).sort();
  return {
    requests: n,
    perSecond: Math.round(n / elapsed),
    p50Ms: round(percentile(sorted, n, 50)),
    p99Ms: round(percentile(sorted, n, 99)),
    maxMs: round(percentile(sorted, n, 100)),
    errors,
    statuses,
  };
}

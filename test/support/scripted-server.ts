/**
 * A real HTTP server on 127.0.0.1 (port 0) that records every request and answers from a script:
 * a route function, or a queue of canned replies. For client tests over real HTTP.
 */
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { Logger } from 'pino';

export type Recorded = {
  method: string;
  /** Path and query as received. */
  url: string;
  headers: IncomingHttpHeaders;
  rawBody: string;
  /** Parsed JSON body, or undefined when there was none (or it was not JSON). */
  body: unknown;
  at: number;
};

export type Reply = {
  status: number;
  headers?: Record<string, string>;
  /** A string is sent as is; anything else as JSON. Undefined sends an empty body. */
  body?: unknown;
  /** Destroy the socket instead of answering (a network error for the client). */
  destroy?: boolean;
  /** Wait this long before answering. */
  delayMs?: number;
};

export type Route = (req: Recorded, index: number) => Reply | Promise<Reply>;

export type ScriptedServer = {
  url: string;
  /** The base URL of the API on this server (`<url>/api`). */
  apiUrl: string;
  requests: Recorded[];
  /** Replace the script: a route function or a queue of replies (the last one repeats). */
  script(route: Route | Reply[]): void;
  close(): Promise<void>;
};

export async function startScriptedServer(route: Route | Reply[] = [{ status: 404 }]): Promise<ScriptedServer> {
  let current: Route = toRoute(route);
  const requests: Recorded[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const rawBody = Buffer.concat(chunks).toString('utf8');
      let body: unknown;
      if (rawBody.length > 0) {
        try {
          body = JSON.parse(rawBody);
        } catch {
          body = undefined;
        }
      }
      const recorded: Recorded = {
        method: req.method ?? 'GET',
        url: req.url ?? '/',
        headers: req.headers,
        rawBody,
        body,
        at: Date.now(),
      };
      requests.push(recorded);
      void Promise.resolve(current(recorded, requests.length - 1)).then(
        async (reply) => {
          if (reply.delayMs) await new Promise((r) => setTimeout(r, reply.delayMs));
          if (reply.destroy) {
            req.socket.destroy();
            return;
          }
          const headers: Record<string, string> = { ...reply.headers };
          let text = '';
          if (typeof reply.body === 'string') text = reply.body;
          else if (reply.body !== undefined) {
            text = JSON.stringify(reply.body);
            headers['content-type'] ??= 'application/json; charset=utf-8';
          }
          res.writeHead(reply.status, headers);
          res.end(text);
        },
        (err: unknown) => {
          res.writeHead(599, { 'content-type': 'text/plain' });
          res.end(`script error: ${String(err)}`);
        },
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    apiUrl: `${url}/api`,
    requests,
    script(next) {
      current = toRoute(next);
    },
    close() {
      server.closeAllConnections();
      return new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
    },
  };
}

function toRoute(route: Route | Reply[]): Route {
  if (typeof route === 'function') return route;
  const queue = [...route];
  return () => (queue.length > 1 ? (queue.shift() as Reply) : (queue[0] ?? { status: 404 }));
}

/** A pino logger whose lines are collected as objects (and as raw text, to look for leaked secrets). */
export function captureLogger(): { logger: Logger; lines: Record<string, unknown>[]; text: () => string } {
  const raw: string[] = [];
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      const s = chunk.toString('utf8');
      raw.push(s);
      for (const line of s.split('\n')) if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const logger = pino({ level: 'debug' }, stream);
  return { logger, lines, text: () => raw.join('') };
}

/**
 * Shared pieces of the runner tests: a fake "outside system" (Microsoft, as far as a process manager is concerned)
 * that counts the calls made for each intent, and a process handler written the way the real ones are:
 * idempotent, re-checking recorded state and the outside system before calling it, recording what it did.
 */
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { EventStore, RecordedEvent } from '../../src/eventstore/eventstore.js';
import type { Logger } from '../../src/logger.js';
import type { ProcessHandler } from '../../src/processes/runner/start.js';

export type LogLine = { level: number; msg: string; [key: string]: unknown };

/** A logger that keeps its lines (JSON objects) for assertions; nothing is printed. */
export function capturingLogger(level = 'info'): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) lines.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  return { logger: pino({ level }, sink), lines };
}

export const unique = (label: string): string => `${label}${randomUUID().replaceAll('-', '').slice(0, 10)}`;

/** The outside world: one entry per call actually made, by whom. Answers `has` like Microsoft's Get would. */
export class FakeOutside {
  readonly calls: Array<{ intent: string; by: string }> = [];
  private readonly traps = new Map<string, (by: string) => Promise<void>>();

  /** The next call for `intent` is made (recorded) and then waits on what `trap` returns before answering. */
  trap(intent: string, trap: (by: string) => Promise<void>): void {
    this.traps.set(intent, trap);
  }

  async has(intent: string): Promise<boolean> {
    return this.calls.some((c) => c.intent === intent);
  }

  async call(intent: string, by: string): Promise<void> {
    this.calls.push({ intent, by });
    const trap = this.traps.get(intent);
    if (trap) {
      this.traps.delete(intent);
      await trap(by);
    }
  }

  callsFor(intent: string): number {
    return this.calls.filter((c) => c.intent === intent).length;
  }
}

export type Delivery = { by: string; type: string; streamId: string; position: bigint; intent?: string };

export type JobHandler = ProcessHandler & { deliveries: Delivery[] };

/**
 * Acts on `JobRequested {intent}` in `<prefix>-…` streams: skip when the stream already has `JobDone`; otherwise ask
 * the outside system whether the call was made (a predecessor may have died after calling, before recording), call
 * it only if not, and record `JobDone {how}`. Counts every delivery it gets.
 */
export function jobHandler(opts: {
  store: EventStore;
  outside: Pick<FakeOutside, 'has' | 'call'>;
  by: string;
  prefix: string;
  name?: string;
  /** Called first for every delivery (e.g. to fail on purpose). */
  before?: (event: RecordedEvent) => Promise<void> | void;
}): JobHandler {
  const deliveries: Delivery[] = [];
  return {
    name: opts.name ?? 'jobs',
    streamPrefixes: [`${opts.prefix}-`],
    deliveries,
    async handle(event) {
      const intent = (event.data as { intent?: string }).intent;
      deliveries.push({ by: opts.by, type: event.type, streamId: event.streamId, position: event.position, ...(intent ? { intent } : {}) });
      await opts.before?.(event);
      if (event.type !== 'JobRequested' || !intent) return;
      const history = await opts.store.readStream(event.streamId);
      if (history.some((e) => e.type === 'JobDone')) return;
      let how: 'called' | 'found-done' = 'called';
      if (await opts.outside.has(intent)) how = 'found-done';
      else await opts.outside.call(intent, opts.by);
      await opts.store.appendToStream(event.streamId, [{ type: 'JobDone', data: { intent, by: opts.by, how } }]);
    },
  };
}

/** Appends one `JobRequested` per intent, each in its own stream `<prefix>-<intent>`. */
export async function requestJobs(store: EventStore, prefix: string, intents: readonly string[]): Promise<void> {
  for (const intent of intents) {
    await store.appendToStream(`${prefix}-${intent}`, [{ type: 'JobRequested', data: { intent } }]);
  }
}

/** The `JobDone` events recorded for these intents, by intent. */
export async function doneJobs(store: EventStore, prefix: string, intents: readonly string[]): Promise<Map<string, { by: string; how: string }[]>> {
  const done = new Map<string, { by: string; how: string }[]>();
  for (const intent of intents) {
    const events = await store.readStream(`${prefix}-${intent}`);
    done.set(intent, events.filter((e) => e.type === 'JobDone').map((e) => e.data as { by: string; how: string }));
  }
  return done;
}

export const range = (n: number, label = 'i'): string[] => Array.from({ length: n }, (_, i) => `${label}${String(i + 1).padStart(3, '0')}`);

/** A promise and the functions that settle it. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void; reject: (err: unknown) => void } {
  let resolve: (value: T) => void = () => undefined;
  let reject: (err: unknown) => void = () => undefined;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

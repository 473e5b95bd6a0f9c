/**
 * A sandbox's emulator keeps its state in a file beside the ledger's store, so that both sides agree after a
 * restart (the ledger's events persist in DATA_DIR; Microsoft's records would otherwise start empty and every
 * operator change to an existing subscription would answer SubscriptionNotFound).
 *
 * - At start (before the emulator is connected to the service): the file, if any, is loaded. An unreadable
 *   file is set aside as `<file>.unreadable-<time>` and the emulator starts empty, saying so: never half-loaded.
 * - While running: after every request that may change something (any method but GET and HEAD) the state is
 *   compared with the last save every `intervalMs` for `activeMs` (long enough for what Microsoft does later
 *   by itself: a publisher PATCH processed, an acknowledgement window elapsing, a webhook refused), and saved
 *   when it differs, by writing a temporary file and renaming it over the old one (a crash leaves the old file
 *   or the new one, never a torn one). An idle emulator costs nothing.
 * - At close: saved once more.
 *
 * What is not kept: timers in flight. An operation that Microsoft had not started yet (a publisher PATCH or
 * DELETE inside its `operationDelayMs`) and a change whose acknowledgement window was open are settled at
 * load as Microsoft would settle them left alone: the window elapses (the change is accepted), and a request
 * Microsoft never processed fails (`the emulator restarted before it processed the request`); webhook
 * redeliveries still queued are not resumed (the ledger's reconciliation finds what they would have said).
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Emulator } from './emulator.js';
import { decodeSnapshot, encodeSnapshot } from './snapshot.js';

export const EMULATOR_STATE_FILE = 'emulator-state.json';

export type PersistedEmulator = {
  /** Whether the state came from the file (false: it started empty). */
  restored: boolean;
  subscriptions: number;
  /** Saves now if anything changed since the last save. */
  save(): void;
  /** Stops saving on change, after one last save. */
  close(): void;
};

export type PersistenceTimings = { intervalMs: number; activeMs: number };

/** Loads `file` into a freshly started (listening) emulator, then keeps it saved there. */
export function persistEmulator(emulator: Emulator, file: string, log: Logger, timings: PersistenceTimings = { intervalMs: 500, activeMs: 60_000 }): PersistedEmulator {
  const restored = load(emulator, file, log);
  let last = restored ? readFileSync(file, 'utf8') : '';
  const save = (): void => {
    const now = new Date();
    const text = encodeSnapshot(emulator.state.contents(), emulator.clock.offsetMs, now);
    // savedAt changes every time: compare the rest.
    if (withoutSavedAt(text) === withoutSavedAt(last)) return;
    const temporary = `${file}.${process.pid}.tmp`;
    writeFileSync(temporary, text, { mode: 0o600 });
    renameSync(temporary, file);
    last = text;
  };
  const trySave = (): void => {
    try {
      save();
    } catch (err) {
      log.error({ err, file }, 'could not save the emulator state; will try again');
    }
  };
  let activeUntil = 0;
  const timer = setInterval(() => {
    if (Date.now() <= activeUntil) trySave();
  }, timings.intervalMs);
  timer.unref();
  emulator.app.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (req.method === 'GET' || req.method === 'HEAD') return;
    res.once('finish', () => (activeUntil = Date.now() + timings.activeMs));
  });
  return {
    restored,
    subscriptions: emulator.state.subscriptions().length,
    save,
    close() {
      clearInterval(timer);
      trySave();
    },
  };
}

function withoutSavedAt(text: string): string {
  return text.replace(/"savedAt":"[^"]*"/, '');
}

/** True when the file was loaded. */
function load(emulator: Emulator, file: string, log: Logger): boolean {
  if (!existsSync(file)) return false;
  const decoded = decodeSnapshot(readFileSync(file, 'utf8'));
  if ('problem' in decoded) {
    const aside = `${file}.unreadable-${Date.now()}`;
    renameSync(file, aside);
    log.error({ file, setAside: aside, problem: decoded.problem }, 'the emulator state file cannot be read: set aside, starting with an empty marketplace');
    return false;
  }
  const { snapshot } = decoded;
  emulator.state.restore(snapshot);
  if (snapshot.calendarOffsetMs > 0) emulator.clock.advance(snapshot.calendarOffsetMs);
  settleInterrupted(emulator);
  return true;
}

/** Operations whose timers the restart lost, settled as Microsoft would settle them left alone. */
function settleInterrupted(emulator: Emulator): void {
  const now = emulator.clock.now();
  for (const op of emulator.state.contents().operations) {
    if (op.status === 'InProgress') emulator.state.accept(op.id, now);
    else if (op.status === 'NotStarted') emulator.state.reject(op.id, now, 'the emulator restarted before it processed the request');
  }
}

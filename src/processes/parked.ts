/**
 * Held events of the process managers, for operators (the routes are src/http/processes.routes.ts).
 *
 * The catch-up and lease runners keep, inside each process's checkpoint record, the keys whose events wait
 * (runner/held.ts): RETRYING after a failure (a retry is due at `nextAttemptAt`) or PARKED (no more attempts until
 * an operator asks). This module reads them back from the store, so any instance answers the same, and turns an
 * operator's retry into a `ParkedRetryRequested` event on the process's `processctl-<name>` stream, which the
 * instance running the process (on SQLite, the lease holder) picks up in order: it attempts the key's held events
 * again, first to last, and each one handled leaves the list. The list is as of the last checkpoint save, which
 * happens at once when an event is parked or a retry requested, and within `checkpointAfterMs` otherwise.
 *
 * The persistent mode (EventStoreDB) keeps no such list: the server parks events itself (docs/several-instances.md).
 */
import { ownInitiative } from '../eventstore/provenance.js';
import type { Provenance } from '../eventstore/provenance.js';
import type { EventStore } from '../eventstore/eventstore.js';
import { readCheckpointRecord } from './runner/checkpoints.js';
import { CONTROL_STREAM_KEEP, controlStream, RETRY_REQUESTED } from './runner/held.js';
import type { HeldKey, RetryRequest } from './runner/held.js';
import type { RunnerMode } from './runner/types.js';

export type HeldEventView = { streamId: string; revision: string; position: string; type: string };

export type HeldKeyView = {
  process: string;
  key: string;
  status: 'retrying' | 'parked';
  attempts: number;
  firstFailureAt: string;
  lastFailureAt: string;
  lastError: string;
  /** The last failure was a RetryLater (or the store unavailable): retried until `until`, without a bound on attempts. */
  transient: boolean;
  nextAttemptAt?: string;
  until?: string;
  /** The failing event first, then the events of the key waiting behind it. */
  events: HeldEventView[];
};

export type ProcessView = {
  name: string;
  mode: RunnerMode;
  /** The saved checkpoint (absent before the first save, and in persistent mode). */
  checkpoint?: string;
  checkpointSavedAt?: string;
  parked: number;
  retrying: number;
  /** Events of all held keys, and events behind the checkpoint not yet handled. */
  heldEvents: number;
  /** Why the held list could not be read, when it could not. */
  problem?: string;
};

export type HeldList = { parked: HeldKeyView[]; retrying: HeldKeyView[] };

export type RetryOutcome =
  | { outcome: 'requested'; process: string; key: string; status: 'retrying' | 'parked'; events: number }
  | { outcome: 'unknown-process' }
  | { outcome: 'not-held' }
  | { outcome: 'persistent' };

export type ProcessAdmin = {
  processes(): Promise<ProcessView[]>;
  /** Every held key (of one process, when named); undefined for an unknown process. */
  held(process?: string): Promise<HeldList | undefined>;
  /** `provenance`: the operator request that asked (src/eventstore/provenance.ts). */
  retry(process: string, key: string, actor: string, provenance?: Provenance): Promise<RetryOutcome>;
};

export type ProcessAdminOptions = {
  store: EventStore;
  /** The processes this service runs, with their runner mode. */
  processes: () => ReadonlyArray<{ name: string; mode: RunnerMode }>;
  now?: () => Date;
};

export function processAdmin(options: ProcessAdminOptions): ProcessAdmin {
  const { store } = options;
  const find = (name: string) => options.processes().find((p) => p.name === name);

  const heldOf = async (name: string, mode: RunnerMode): Promise<HeldKey[]> =>
    mode === 'persistent' ? [] : ((await readCheckpointRecord(store, name))?.held ?? []);

  const list = async (names: ReadonlyArray<{ name: string; mode: RunnerMode }>): Promise<HeldList> => {
    const out: HeldList = { parked: [], retrying: [] };
    for (const p of names) {
      for (const entry of await heldOf(p.name, p.mode)) {
        const view = viewOf(p.name, entry);
        if (view) out[view.status].push(view);
      }
    }
    const byFirstFailure = (a: HeldKeyView, b: HeldKeyView) => a.firstFailureAt.localeCompare(b.firstFailureAt);
    out.parked.sort(byFirstFailure);
    out.retrying.sort(byFirstFailure);
    return out;
  };

  return {
    async processes() {
      const out: ProcessView[] = [];
      for (const p of options.processes()) {
        const record = p.mode === 'persistent' ? undefined : await readCheckpointRecord(store, p.name);
        const held = record?.held ?? [];
        out.push({
          name: p.name,
          mode: p.mode,
          ...(record ? { checkpoint: record.position.toString(), checkpointSavedAt: record.savedAt } : {}),
          parked: held.filter((h) => h.failure?.status === 'parked').length,
          retrying: held.filter((h) => h.failure?.status === 'retrying').length,
          heldEvents: held.reduce((n, h) => n + h.events.length, 0),
          ...(record?.problem ? { problem: record.problem } : {}),
        });
      }
      return out;
    },
    async held(process) {
      if (process === undefined) return list(options.processes());
      const p = find(process);
      return p ? list([p]) : undefined;
    },
    async retry(process, key, actor, provenance = ownInitiative()) {
      const p = find(process);
      if (!p) return { outcome: 'unknown-process' };
      if (p.mode === 'persistent') return { outcome: 'persistent' };
      const entry = (await heldOf(p.name, p.mode)).find((h) => h.key === key && h.failure);
      if (!entry?.failure) return { outcome: 'not-held' };
      const data: RetryRequest = { key, at: (options.now?.() ?? new Date()).toISOString(), actor };
      await store.appendToStream(controlStream(p.name), [{ type: RETRY_REQUESTED, data, metadata: { actor, ...provenance } }], { keepLast: CONTROL_STREAM_KEEP });
      return { outcome: 'requested', process: p.name, key, status: entry.failure.status, events: entry.events.length };
    },
  };
}

function viewOf(process: string, entry: HeldKey): HeldKeyView | undefined {
  const f = entry.failure;
  if (!f) return undefined;
  return {
    process,
    key: entry.key,
    status: f.status,
    attempts: f.attempts,
    firstFailureAt: f.firstFailureAt,
    lastFailureAt: f.lastFailureAt,
    lastError: f.lastError,
    transient: f.transient,
    ...(f.nextAttemptAt !== undefined ? { nextAttemptAt: f.nextAttemptAt } : {}),
    ...(f.until !== undefined ? { until: f.until } : {}),
    events: entry.events.map((e) => ({ ...e })),
  };
}

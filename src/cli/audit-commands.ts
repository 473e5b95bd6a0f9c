/**
 * The auditors' commands of `fulfillment-ledger` (issue 12), each given an open store and the CLI's output:
 * history, state --at, export, replay, verify, migrate. They return the exit code (0 ok, 1 failure or differences).
 */
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Config } from '../config.js';
import { subscriptionHistory, subscriptionStateAt } from '../application/audit-history.js';
import type { HistoryEntry } from '../application/audit-history.js';
import { exportText } from '../application/event-export.js';
import type { ExportFilter, ExportFormat } from '../application/event-export.js';
import { migrateEvents, verifyMigration } from '../application/migrate-store.js';
import type { EventStore } from '../eventstore/eventstore.js';
import type { Logger } from '../logger.js';
import { currentGeneration } from '../projections/generations.js';
import { replayReadModels, verifyReadModels } from '../projections/replay.js';
import { rebuildPostgresGeneration } from '../projections/index.js';
import { progressBar } from './progress.js';
import { checkChains } from './verify-chains.js';
import type { ChainSection } from './verify-chains.js';

export type CliIo = {
  out: (line: string) => void;
  err: (line: string) => void;
  /** Where `export` streams to when no --output is given. */
  stdout: NodeJS.WritableStream;
  /** Whether stderr is a terminal (progress bars are drawn only then). */
  tty: boolean;
};

export type CommandContext = { config: Config; store: EventStore; io: CliIo; logger: Logger; json: boolean; signal?: AbortSignal };

const short = (v: unknown): string => {
  const text = v === undefined ? '(none)' : JSON.stringify(v);
  return text.length > 70 ? `${text.slice(0, 67)}...` : text;
};

function describeSource(e: HistoryEntry): string {
  const s = e.source;
  const who = s.operator ? `operator ${s.operator}` : s.customer ? `customer ${s.customer}` : s.process ? `process ${s.process}` : (e.actor ?? '-');
  const op = s.operationId ? ` operation ${s.operationId}` : '';
  return `${s.kind}${op} by ${who}`;
}

export async function historyCommand(ctx: CommandContext, id: string): Promise<number> {
  const history = await subscriptionHistory(ctx.store, id);
  if (!history) {
    ctx.io.err(`history: no subscription ${id} in the ${ctx.store.kind} store`);
    return 1;
  }
  if (ctx.json) {
    ctx.io.out(JSON.stringify({ subscriptionId: id, events: history.entries }, null, 2));
    return 0;
  }
  ctx.io.out(`subscription ${id}: ${history.entries.length} events`);
  for (const e of history.entries) {
    ctx.io.out(`#${e.revision.padEnd(3)} ${e.recordedAt}  ${e.type.padEnd(24)} ${describeSource(e)}`);
    for (const c of e.changes) ctx.io.out(`       ${c.path}: ${short(c.before)} -> ${short(c.after)}`);
  }
  return 0;
}

export async function stateCommand(ctx: CommandContext, id: string, atMs: number): Promise<number> {
  const result = await subscriptionStateAt(ctx.store, id, atMs);
  if (!result) {
    ctx.io.err(`state: no subscription ${id} in the ${ctx.store.kind} store`);
    return 1;
  }
  if (ctx.json) {
    ctx.io.out(JSON.stringify(result, null, 2));
    return 0;
  }
  if (result.events === 0) {
    ctx.io.out(`subscription ${id} did not exist yet at ${result.at} (its first event was recorded later)`);
    return 0;
  }
  ctx.io.out(`subscription ${id} at ${result.at}: ${result.events} events folded, the last (#${result.revision}) recorded ${result.lastEventAt}`);
  ctx.io.out(JSON.stringify(result.state, null, 2));
  return 0;
}

export async function exportCommand(ctx: CommandContext, filter: ExportFilter, format: ExportFormat, output: string | undefined): Promise<number> {
  const out = output ? createWriteStream(output) : ctx.io.stdout;
  const showBar = ctx.io.tty && output !== undefined; // on stdout the export itself is the output
  const bar = progressBar(showBar, 'export');
  let total = 0;
  if (showBar) for await (const _e of ctx.store.readAll()) total++; // the bar's total: at most every event
  let n = 0;
  try {
    for await (const chunk of exportText(ctx.store, filter, format, () => n++)) {
      ctx.signal?.throwIfAborted();
      if (!out.write(chunk)) await once(out, 'drain');
      if (n % 1000 === 0) bar.update(n, Math.max(total, n));
    }
    bar.update(n, n);
  } finally {
    bar.stop();
    if (output) await new Promise<void>((done) => out.end(done));
  }
  if (output) ctx.io.err(`export: ${n} events written to ${output} (${format})`);
  return 0;
}

export async function replayCommand(ctx: CommandContext): Promise<number> {
  const url = ctx.config.projections.url;
  if (url) {
    // PostgreSQL: a new schema built while the live one serves, then switched in one transaction (postgres.generations.ts).
    const r = await rebuildPostgresGeneration({ store: ctx.store, url, logger: ctx.logger });
    if (ctx.json) ctx.io.out(JSON.stringify(r, null, 2));
    else ctx.io.out(`replay: ${r.events} events into schema ${r.schema} in ${(r.ms / 1000).toFixed(2)} s (${r.eventsPerSecond} events/s); switched from ${r.previous}; every instance follows at its next batch`);
    return 0;
  }
  const bar = progressBar(ctx.io.tty, 'replay');
  let result: Awaited<ReturnType<typeof replayReadModels>>;
  try {
    result = await replayReadModels({ store: ctx.store, logger: ctx.logger, basePath: ctx.config.projections.path, planPrices: ctx.config.projections.planPrices, onProgress: (done, total) => bar.update(done, total) });
  } finally {
    bar.stop();
  }
  if (ctx.json) ctx.io.out(JSON.stringify(result, null, 2));
  else {
    ctx.io.out(`replay: ${result.events} events into ${result.path} in ${(result.ms / 1000).toFixed(2)} s (${result.eventsPerSecond} events/s), up to position ${result.position ?? '-'}`);
    ctx.io.out(`replay: switched from generation ${result.previous.generation} (${result.previous.path}) to generation ${result.generation}; a running service follows within a second`);
    if (result.removed.length > 0) ctx.io.out(`replay: removed older generations ${result.removed.join(', ')}`);
  }
  return 0;
}

/** The chain half of verify's text report: the counts, then every problem named. */
function chainsLine(chains: ChainSection): string {
  const c = chains.report;
  const lines = [`chains: ${chains.status} (${c.streams} streams, ${c.events} events, ${c.verified} hashes recomputed and equal${c.unchainedCount > 0 ? `, ${c.unchainedCount} streams begin before the chain` : ''}${c.pruned > 0 ? `, ${c.pruned} bounded streams start after revision 0` : ''})`];
  for (const p of c.problems) lines.push(`  ${p.kind}: ${p.streamId} revision ${p.revision}${p.eventId ? ` (event ${p.eventId})` : ''}: ${p.detail}`);
  if (c.problemCount > c.problems.length) lines.push(`  … and ${c.problemCount - c.problems.length} more`);
  return lines.join('\n');
}

export async function verifyCommand(ctx: CommandContext, streamId: string | undefined): Promise<number> {
  const chainBar = progressBar(ctx.io.tty, 'chains');
  const chains = await checkChains(ctx.store, { ...(streamId ? { streamId } : {}), onProgress: (done, total) => chainBar.update(done, total) }).finally(() => chainBar.stop());
  if (ctx.config.projections.url) {
    // The read-model comparison reads SQLite files side by side; over PostgreSQL only the chains are checked here.
    const reason = 'the read models are in PostgreSQL (READMODELS_URL): verify compares SQLite read-model files only; `replay` rebuilds a PostgreSQL generation from the events';
    if (ctx.json) ctx.io.out(JSON.stringify({ ok: chains.status === 'ok', chains, readModels: { compared: false, reason } }, null, 2));
    else ctx.io.out(`${chainsLine(chains)}\nread models: not compared (${reason})`);
    return chains.status === 'ok' ? 0 : 1;
  }
  const live = currentGeneration(ctx.config.projections.path).path;
  const bar = progressBar(ctx.io.tty, 'read models');
  const readModels = await verifyReadModels({ store: ctx.store, logger: ctx.logger, livePath: live, scratchPath: join(dirname(live), `verify-scratch-${process.pid}.db`), onProgress: (d, t) => bar.update(d, t) }).finally(() => bar.stop());
  const ok = chains.status !== 'failed' && readModels.ok;
  if (ctx.json) {
    ctx.io.out(JSON.stringify({ ok, chains, readModels }, null, 2));
    return ok ? 0 : 1;
  }
  ctx.io.out(chainsLine(chains));
  ctx.io.out(`read models: ${readModels.ok ? 'equal to a rebuild' : 'DIFFERENT from a rebuild'} (${live}, at position ${readModels.position ?? '-'})`);
  for (const p of readModels.problems) ctx.io.out(`  ${p}`);
  for (const d of readModels.differences) {
    ctx.io.out(`  ${d.table}: ${d.liveRows} rows live, ${d.rebuiltRows} rebuilt`);
    for (const r of d.differing) ctx.io.out(`    row ${r.key} differs: live ${short(r.live)} rebuilt ${short(r.rebuilt)}`);
    for (const r of d.onlyLive) ctx.io.out(`    only live: ${short(r)}`);
    for (const r of d.onlyRebuilt) ctx.io.out(`    missing from live: ${short(r)}`);
  }
  return ok ? 0 : 1;
}

/** The connection string without user and password, to name the target in the checkpoint and the output. */
export function targetName(connectionString: string): string {
  return connectionString.replace(/\/\/[^@/]*@/, '//');
}

export async function migrateCommand(ctx: CommandContext, target: EventStore, to: string, checkpointPath: string): Promise<number> {
  const bar = progressBar(ctx.io.tty, 'migrate');
  let total = 0;
  for await (const _e of ctx.store.readAll()) total++;
  const copy = await migrateEvents({ source: ctx.store, target, targetName: targetName(to), checkpointPath, onProgress: (n) => bar.update(n, total), ...(ctx.signal ? { signal: ctx.signal } : {}) }).finally(() => bar.stop());
  const report = await verifyMigration(ctx.store, target);
  if (ctx.json) ctx.io.out(JSON.stringify({ ok: report.ok, copy, verification: report }, null, 2));
  else {
    ctx.io.out(`migrate: ${copy.copied} events in ${targetName(to)}, ${copy.appended} appended by this run${copy.resumedAfter ? ` (resumed after position ${copy.resumedAfter}; ${copy.skipped} found already copied)` : ''}`);
    ctx.io.out(`migrate: verification ${report.ok ? 'passed' : 'FAILED'}: ${report.events} events in ${report.streams} streams compared`);
    ctx.io.out(`migrate: the target's integrity chains ${report.chains.ok ? 'verify' : 'do NOT verify'} (${report.chains.verified} hashes recomputed and equal, ${report.chains.problemCount} problems)`);
    for (const p of report.chains.problems.slice(0, 20)) ctx.io.out(`  ${p.kind}: ${p.streamId} revision ${p.revision}: ${p.detail}`);
    if (report.renumbered.length > 0) ctx.io.out(`migrate: ${report.renumbered.length} bounded streams (checkpoints) start at revision 0 in the target: ${report.renumbered.slice(0, 5).join(', ')}${report.renumbered.length > 5 ? ', ...' : ''}`);
    for (const d of report.differences) ctx.io.out(`  ${d.streamId} ${d.eventId ?? ''} #${d.revision ?? '-'}: ${d.problem}`);
    for (const c of report.counts) ctx.io.out(`  ${c.streamId}: ${c.source} events in the source, ${c.target} in the target`);
  }
  return report.ok ? 0 : 1;
}

/**
 * Replay benchmark (issue 12): `fulfillment-ledger replay` over a large store.
 *
 *   npm run bench:replay                 # 1,000,000 events (the store file is cached after the first run)
 *   EVENTS=20000 npm run bench:replay
 *
 * On a store file pre-filled with EVENTS events of synthetic history (bench/support/history-file.ts):
 * 1. raw: the store's readAll over every event, doing nothing with them (the limit the replay is measured against);
 * 2. live read models: built once as a running service would have them (rebuildProjections into readmodels.db);
 * 3. replay: the real CLI as a child process (`src/cli/main.ts replay --json`, its progress bar on this terminal's
 *    stderr when there is one), its peak RSS read from /proc (VmHWM) while it runs, its events/s from its output;
 * 4. the generation it switched to compared table by table with the live read models (they must be equal).
 *
 * Prints the figures and writes bench/results/replay.json (bench/support/results.ts).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSqliteStore } from '../src/eventstore/sqlite.store.js';
import { createLogger } from '../src/logger.js';
import { rebuildProjections } from '../src/projections/index.js';
import { compareReadModelFiles } from '../src/projections/replay.js';
import { historyFile } from './support/history-file.js';
import { meetsGoal, writeResult } from './support/results.js';
import type { Figure } from './support/results.js';

const EVENTS = Number(process.env.EVENTS ?? 1_000_000);
const root = join(import.meta.dirname, '..');
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

/** The process's peak resident set so far (VmHWM), in MiB; 0 once it is gone. */
function peakRssMiB(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

type ReplayOutput = { events: number; eventsPerSecond: number; ms: number; path: string; generation: number };

async function replayChild(dataDir: string): Promise<{ output: ReplayOutput; peakRssMiB: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'src', 'cli', 'main.ts'), 'replay', '--json'], {
    cwd: root,
    env: { ...process.env, DATA_DIR: dataDir, LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'], // the bar goes to this terminal's stderr
  });
  let stdout = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, peakRssMiB(child.pid ?? 0))), 50);
  const code = await new Promise<number>((resolve) => child.once('exit', (c) => resolve(c ?? 1)));
  clearInterval(sampler);
  if (code !== 0) throw new Error(`replay exited with ${code}`);
  return { output: JSON.parse(stdout) as ReplayOutput, peakRssMiB: peak };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-replay-'));
  try {
    const storePath = join(dir, 'events.db');
    const events = await historyFile(EVENTS, storePath);
    console.log(`store: ${fmt(events)} events`);
    const store = openSqliteStore({ path: storePath, checkpointIntervalMs: 0 });
    let raw = 0;
    const rawStarted = performance.now();
    for await (const _e of store.readAll()) raw++;
    const rawPerSecond = (raw / (performance.now() - rawStarted)) * 1000;
    console.log(`raw read: ${fmt(rawPerSecond)} events/s`);
    const livePath = join(dir, 'readmodels.db');
    const live = await rebuildProjections({ store, path: livePath, logger: createLogger('warn') });
    console.log(`live read models built: ${fmt(live.events)} events in ${(live.ms / 1000).toFixed(1)} s`);
    await store.close();

    const replay = await replayChild(dir);
    console.log(`replay: ${fmt(replay.output.events)} events in ${(replay.output.ms / 1000).toFixed(1)} s, ${fmt(replay.output.eventsPerSecond)} events/s, peak RSS ${replay.peakRssMiB.toFixed(0)} MiB`);
    const compared = await compareReadModelFiles(livePath, replay.output.path);
    console.log(`rebuilt = live: ${compared.ok} (${compared.tables.map((t) => `${t.table} ${t.rows}`).join(', ')})`);

    const figures: Figure[] = [
      { name: `replay, ${fmt(events)} events, into a fresh file`, value: replay.output.eventsPerSecond, unit: 'events/s', limit: { name: 'raw readAll of the same store', value: Math.round(rawPerSecond), unit: 'events/s' } },
      { name: `replay peak RSS, ${fmt(events)} events`, value: Math.round(replay.peakRssMiB), unit: 'MiB', goal: { op: '<=', value: 512 }, note: 'VmHWM of the CLI process (Node, tsx and the SQLite page cache included)' },
      { name: 'replayed read models equal the live ones', value: compared.ok ? 1 : 0, unit: 'bool', goal: { op: '>=', value: 1 } },
    ];
    for (const f of figures) console.log(`${f.name}: ${f.value} ${f.unit}${f.goal ? (meetsGoal(f) ? ' (goal met)' : ' (goal MISSED)') : ''}`);
    const path = writeResult({ bench: 'replay', command: `EVENTS=${EVENTS} npm run bench:replay`, figures, details: { events, replay: replay.output, differences: compared.differences.slice(0, 5) } });
    console.log(`\nwrote ${path}`);
    if (!compared.ok) process.exitCode = 1;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});

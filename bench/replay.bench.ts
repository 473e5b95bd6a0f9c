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
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
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

/** The process's peak resident set so far (VmHWM), in MB (10^6 bytes, as issue 11's goal says); 0 once it is gone. */
function peakRssMB(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? (Number(m[1]) * 1024) / 1e6 : 0;
  } catch {
    return 0;
  }
}

type ReplayOutput = { events: number; eventsPerSecond: number; ms: number; path: string; generation: number };

async function replayChild(dataDir: string): Promise<{ output: ReplayOutput; peakRssMB: number; how: string }> {
  // The compiled CLI when built (npm run bench builds first), as in production; else the sources through tsx.
  const compiled = join(root, 'dist', 'cli', 'main.js');
  const entry = existsSync(compiled) ? [compiled] : ['--import', 'tsx', join(root, 'src', 'cli', 'main.ts')];
  const child = spawn(process.execPath, [...entry, 'replay', '--json'], {
    cwd: root,
    env: { ...process.env, DATA_DIR: dataDir, LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'], // the bar goes to this terminal's stderr
  });
  let stdout = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, peakRssMB(child.pid ?? 0))), 50);
  const code = await new Promise<number>((resolve) => child.once('exit', (c) => resolve(c ?? 1)));
  clearInterval(sampler);
  if (code !== 0) throw new Error(`replay exited with ${code}`);
  return { output: JSON.parse(stdout) as ReplayOutput, peakRssMB: peak, how: existsSync(compiled) ? 'node dist/cli/main.js' : 'the sources through tsx' };
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
    console.log(`replay: ${fmt(replay.output.events)} events in ${(replay.output.ms / 1000).toFixed(1)} s, ${fmt(replay.output.eventsPerSecond)} events/s, peak RSS ${replay.peakRssMB.toFixed(0)} MB (${replay.how})`);
    const compared = await compareReadModelFiles(livePath, replay.output.path);
    console.log(`rebuilt = live: ${compared.ok} (${compared.tables.map((t) => `${t.table} ${t.rows}`).join(', ')})`);

    const figures: Figure[] = [
      { name: `replay, ${fmt(events)} events, into a fresh file`, value: replay.output.eventsPerSecond, unit: 'events/s', limit: { name: 'raw readAll of the same store', value: Math.round(rawPerSecond), unit: 'events/s' } },
      {
        name: `replay (a rebuild of every read model in a process of its own) peak RSS, ${fmt(events)} events`,
        value: Math.round(replay.peakRssMB),
        unit: 'MB',
        goal: { op: '<', value: 300 },
        note:
          `VmHWM of the CLI process (${replay.how}; Node, its heap and the SQLite page caches included)` +
          (replay.peakRssMB < 300
            ? ''
            : '. Missed: besides Node and the CLI\'s modules, it is the V8 heap between collections (a batch of 5,000 events, the rows it touches, their JSON) and ' +
              'the read models\' 16 MiB page cache. What would reach it: smaller batches near the end of the budget, and the folded states kept as their stored JSON instead of objects.'),
      },
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

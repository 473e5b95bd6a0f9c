/**
 * The benchmark report (bench/report.ts) on fixture result files: goals met and missed, limits and ratios, notes,
 * and files not in the result shape listed rather than dropped.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { writeReport } from '../../bench/report.js';
import type { BenchResult } from '../../bench/support/results.js';
import { tempDir } from '../support/temp.js';

const machine = { node: 'v20.20.2', platform: 'linux-x64', cpus: 2, cpuModel: 'Test CPU', memoryGiB: 8 };

function result(bench: string, figures: BenchResult['figures']): BenchResult {
  return { bench, command: `npm run bench:${bench}`, at: '2026-12-01T20:00:00.000Z', machine, figures };
}

t.test('each figure with its goal, met or missed, its limit and ratio; the notes; the totals', async (t) => {
  const from = tempDir(t, 'bench-results');
  const to = tempDir(t, 'bench-report');
  const ingest = result('ingest', [
    { name: 'webhook ingest, empty store', value: 6000, unit: 'req/s', goal: { op: '>=', value: 5000 }, limit: { name: 'raw durable inserts', value: 3000, unit: 'req/s' } },
    { name: 'webhook ingest p99', value: 40, unit: 'ms', goal: { op: '<', value: 25 }, note: 'fsync | per request' },
  ]);
  const service = result('service', [{ name: 'idle CPU, 0 events', value: 0.3, unit: '% of a core' }]);
  writeFileSync(join(from, 'ingest.json'), JSON.stringify(ingest));
  writeFileSync(join(from, 'service.json'), JSON.stringify(service));
  writeFileSync(join(from, 'old.json'), JSON.stringify({ at: 'x', results: [] }));
  writeFileSync(join(from, 'broken.json'), '{ not json');

  const report = writeReport(from, to, '2026-12-01T21:00:00.000Z');
  t.same(report.goals, { total: 2, met: 1 });
  t.same(report.benches.map((b) => b.bench), ['ingest', 'service']);
  t.match(report.benches[0]?.figures[0], { met: true, ratio: 2 });
  t.match(report.benches[0]?.figures[1], { met: false });
  t.notOk(report.benches[1]?.figures[0] && 'met' in report.benches[1].figures[0], 'no goal: neither met nor missed');
  t.same(report.skipped.map((s) => s.file), ['broken.json', 'old.json']);

  const md = readFileSync(join(to, 'BENCHMARKS.md'), 'utf8');
  t.match(md, /`npm run bench`/);
  t.match(md, /Machine: 2 × Test CPU, 8 GiB, Node v20\.20\.2, linux-x64/);
  t.match(md, /Goals met: 1 of 2\./);
  t.match(md, /## ingest\n\n`npm run bench:ingest` at 2026-12-01T20:00:00\.000Z/);
  t.match(md, /\| webhook ingest, empty store \| 6,000 req\/s \| >= 5,000 req\/s \| met \| raw durable inserts: 3,000 req\/s \| 2 \| {2}\|/);
  t.match(md, /\| webhook ingest p99 \| 40 ms \| < 25 ms \| \*\*missed\*\* \| – \| – \| fsync \\\| per request \|/, 'a pipe in a note is escaped');
  t.match(md, /\| idle CPU, 0 events \| 0\.3 % of a core \| – \| – \| – \| – \| {2}\|/);
  t.match(md, /## Not read\n\n- broken\.json: not JSON/);
  t.match(md, /- old\.json: not in the result shape/);

  const json = JSON.parse(readFileSync(join(to, 'BENCHMARKS.json'), 'utf8'));
  t.same(json.goals, report.goals);
  t.equal(json.command, 'npm run bench');
  t.equal(json.benches[0].figures[1].met, false);
});

t.test('no results folder: an empty report that says so', async (t) => {
  const to = tempDir(t, 'bench-report');
  const report = writeReport(join(to, 'missing'), to, '2026-12-01T21:00:00.000Z');
  t.same(report.goals, { total: 0, met: 0 });
  t.match(readFileSync(join(to, 'BENCHMARKS.md'), 'utf8'), /no results folder: run the benchmarks first/);
});

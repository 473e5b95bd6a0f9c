/**
 * The benchmark report (issue 11): every bench/results/<bench>.json (bench/support/results.ts) gathered into
 * BENCHMARKS.md at the repository root, for people — the command, the machine, one table per benchmark with each
 * figure, its goal, whether it is met, the limit measured in the same run and the ratio, and the notes — and
 * BENCHMARKS.json beside it with the same content for a script that watches for regressions.
 *
 *   npm run bench:report                 # after the benchmarks (npm run bench runs them all, then this)
 *
 * A result file that is not in the shape is listed under "Not read" with the reason, never silently dropped.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import Type from 'typebox';
import type { Static } from 'typebox';
import Value from 'typebox/value';
import { meetsGoal, resultsDir } from './support/results.js';
import type { BenchResult, Figure } from './support/results.js';

const GoalSchema = Type.Object({ op: Type.Union([Type.Literal('>='), Type.Literal('<='), Type.Literal('<'), Type.Literal('>')]), value: Type.Number() });
const FigureSchema = Type.Object({
  name: Type.String(),
  value: Type.Number(),
  unit: Type.String(),
  goal: Type.Optional(GoalSchema),
  limit: Type.Optional(Type.Object({ name: Type.String(), value: Type.Number(), unit: Type.String() })),
  note: Type.Optional(Type.String()),
});
const MachineSchema = Type.Object({ node: Type.String(), platform: Type.String(), cpus: Type.Number(), cpuModel: Type.String(), memoryGiB: Type.Number() });
const ResultSchema = Type.Object({
  bench: Type.String({ minLength: 1 }),
  command: Type.String(),
  at: Type.String(),
  machine: MachineSchema,
  figures: Type.Array(FigureSchema),
  details: Type.Optional(Type.Unknown()),
});

/** The command that runs every benchmark and then this report. */
export const BENCH_COMMAND = 'npm run bench';

export type ReportedFigure = Figure & { met?: boolean; ratio?: number };
export type ReportedBench = Omit<BenchResult, 'figures'> & { figures: ReportedFigure[] };
export type Skipped = { file: string; reason: string };
export type Report = { command: string; generatedAt: string; benches: ReportedBench[]; skipped: Skipped[]; goals: { total: number; met: number } };

/** Reads every *.json of `dir` (not its subfolders), each checked against the result shape once, here. */
export function readResults(dir: string): { results: BenchResult[]; skipped: Skipped[] } {
  const results: BenchResult[] = [];
  const skipped: Skipped[] = [];
  let names: string[] = [];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith('.json')).sort();
  } catch {
    return { results, skipped: [{ file: dir, reason: 'no results folder: run the benchmarks first' }] };
  }
  for (const file of names) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(join(dir, file), 'utf8'));
    } catch (err) {
      skipped.push({ file, reason: `not JSON: ${err instanceof Error ? err.message : String(err)}` });
      continue;
    }
    if (Value.Check(ResultSchema, parsed)) results.push(fromSchema(parsed));
    else {
      const first = Value.Errors(ResultSchema, parsed)[0];
      skipped.push({ file, reason: `not in the result shape of bench/support/results.ts (${first?.instancePath || '/'} ${first?.message ?? 'is invalid'})` });
    }
  }
  return { results, skipped };
}

/** The checked value as the result type (the optional fields left out rather than undefined). */
function fromSchema(r: Static<typeof ResultSchema>): BenchResult {
  return { ...r, figures: r.figures.map((f) => ({ ...f })) };
}

export function buildReport(results: readonly BenchResult[], skipped: readonly Skipped[], generatedAt: string): Report {
  const benches = results.map((r) => ({ ...r, figures: r.figures.map(reported) }));
  const withGoal = benches.flatMap((b) => b.figures).filter((f) => f.met !== undefined);
  return { command: BENCH_COMMAND, generatedAt, benches, skipped: [...skipped], goals: { total: withGoal.length, met: withGoal.filter((f) => f.met).length } };
}

function reported(f: Figure): ReportedFigure {
  const met = meetsGoal(f);
  const ratio = f.limit && f.limit.value !== 0 ? f.value / f.limit.value : undefined;
  return { ...f, ...(met !== undefined ? { met } : {}), ...(ratio !== undefined ? { ratio: Number(ratio.toPrecision(3)) } : {}) };
}

function number(n: number): string {
  return Math.abs(n) >= 1000 ? Math.round(n).toLocaleString('en-US') : String(Number(n.toPrecision(4)));
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
}

function machineLine(b: BenchResult): string {
  const m = b.machine;
  return `${m.cpus} × ${m.cpuModel}, ${m.memoryGiB} GiB, Node ${m.node}, ${m.platform}`;
}

function figureRow(f: ReportedFigure): string {
  const goal = f.goal ? `${f.goal.op} ${number(f.goal.value)} ${f.unit}` : '–';
  const met = f.met === undefined ? '–' : f.met ? 'met' : '**missed**';
  const limit = f.limit ? `${f.limit.name}: ${number(f.limit.value)} ${f.limit.unit}` : '–';
  const ratio = f.ratio !== undefined ? number(f.ratio) : '–';
  return `| ${cell(f.name)} | ${number(f.value)} ${cell(f.unit)} | ${cell(goal)} | ${met} | ${cell(limit)} | ${ratio} | ${cell(f.note ?? '')} |`;
}

export function renderMarkdown(report: Report): string {
  const machines = [...new Set(report.benches.map(machineLine))];
  const lines = [
    '# Benchmarks',
    '',
    `Produced by \`${report.command}\` (every benchmark, then \`npm run bench:report\`, which wrote this file and BENCHMARKS.json from bench/results/*.json) on ${report.generatedAt}.`,
    '',
    `Machine: ${machines.length ? machines.join('; ') : 'no results'}. The ratio is the figure divided by the limit measured in the same run.`,
    '',
    `Goals met: ${report.goals.met} of ${report.goals.total}.`,
  ];
  for (const b of report.benches) {
    lines.push('', `## ${b.bench}`, '', `\`${b.command}\` at ${b.at}${machines.length > 1 ? ` on ${machineLine(b)}` : ''}.`, '');
    lines.push('| figure | value | goal | met | limit (same run) | ratio | note |', '|---|---|---|---|---|---|---|');
    for (const f of b.figures) lines.push(figureRow(f));
  }
  if (report.skipped.length) {
    lines.push('', '## Not read', '');
    for (const s of report.skipped) lines.push(`- ${s.file}: ${s.reason}`);
  }
  return `${lines.join('\n')}\n`;
}

/** Reads `fromDir`, writes BENCHMARKS.md and BENCHMARKS.json into `toDir`; returns the report. */
export function writeReport(fromDir: string, toDir: string, generatedAt = new Date().toISOString()): Report {
  const { results, skipped } = readResults(fromDir);
  const report = buildReport(results, skipped, generatedAt);
  writeFileSync(join(toDir, 'BENCHMARKS.md'), renderMarkdown(report));
  writeFileSync(join(toDir, 'BENCHMARKS.json'), `${JSON.stringify(report, null, 2)}\n`);
  return report;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const root = join(import.meta.dirname, '..');
  const report = writeReport(resultsDir, root);
  console.log(`BENCHMARKS.md, BENCHMARKS.json: ${report.benches.length} benchmarks, goals met ${report.goals.met} of ${report.goals.total}${report.skipped.length ? `; not read: ${report.skipped.map((s) => s.file).join(', ')}` : ''}`);
}

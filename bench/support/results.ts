/**
 * What every benchmark script leaves behind: bench/results/<bench>.json in one shape, which bench/report.ts
 * gathers into BENCHMARKS.md (for people) and BENCHMARKS.json (for a script that watches for regressions).
 *
 * A figure is one number the issue asks for, with its goal when it has one and the limit it was measured next
 * to in the same run (the ratio is figure / limit). `why` is said for a figure that misses its goal: the cause
 * as measured, and what would reach it.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';

export type Goal = { op: '>=' | '<=' | '<' | '>'; value: number };

export type Figure = {
  /** What is measured, as a reader says it: "webhook ingest, 50 connections, 1M events". */
  name: string;
  value: number;
  /** 'req/s', 'ms', 'events/s', 'MiB', '% of a core', 's', … */
  unit: string;
  goal?: Goal;
  /** What bounds the figure, measured in the same run: the ratio is value / limit.value. */
  limit?: { name: string; value: number; unit: string };
  /** Free text: conditions, the spread of runs, or why a figure misses its goal and what would reach it. */
  note?: string;
};

export type BenchResult = {
  bench: string;
  /** The command that produced it. */
  command: string;
  at: string;
  machine: Machine;
  figures: Figure[];
  /** Anything else worth keeping in machine-readable form (raw runs, settings). */
  details?: unknown;
};

export type Machine = { node: string; platform: string; cpus: number; cpuModel: string; memoryGiB: number };

export function machine(): Machine {
  return {
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 1024 ** 3),
  };
}

export function meetsGoal(f: Figure): boolean | undefined {
  if (!f.goal) return undefined;
  const { op, value } = f.goal;
  return op === '>=' ? f.value >= value : op === '>' ? f.value > value : op === '<=' ? f.value <= value : f.value < value;
}

export const resultsDir = join(import.meta.dirname, '..', 'results');

/** Writes bench/results/<bench>.json. */
export function writeResult(result: Omit<BenchResult, 'at' | 'machine'>): string {
  mkdirSync(resultsDir, { recursive: true });
  const path = join(resultsDir, `${result.bench}.json`);
  const full: BenchResult = { ...result, at: new Date().toISOString(), machine: machine() };
  writeFileSync(path, `${JSON.stringify(full, null, 2)}\n`);
  return path;
}

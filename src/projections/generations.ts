/**
 * Read-model generations: `replay` builds the read models from the first event into a FRESH file and then
 * switches the service to it, atomically, while the service keeps serving the old file until the switch.
 *
 * The switch is a pointer file beside the configured read-model path (READMODELS_PATH, by default
 * `<DATA_DIR>/readmodels.db`): `<READMODELS_PATH>.current`, a small JSON document naming the file in use
 * (`readmodels.g3.db`), its generation and the position it was built to. Without a pointer the configured
 * path itself is in use (generation 0), so a service that never saw a replay is unchanged.
 * - Writing it is atomic: written to a temporary file, fsynced, renamed over the pointer, directory fsynced.
 *   A reader sees the old pointer or the new one, never half of one; a crash leaves one of the two.
 * - A SQLite file is never renamed or replaced under an open connection (its -wal and -shm files go by name,
 *   so renaming a database under a running service could pair a new file with an old WAL).
 * - The service re-reads the pointer cheaply (one stat per interval, default 1 s: `followGenerations`); on a
 *   change it opens the new file and starts the projections on it (they catch up from the position the replay
 *   reached), and only once they are live does it switch its readers to them and stop the old ones.
 */
import { existsSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { Type } from 'typebox';
import { Compile } from 'typebox/compile';
import { readJsonFile, writeJsonFileAtomically } from '../json-file.js';

const PointerSchema = Type.Object({
  file: Type.String({ minLength: 1, pattern: '^[^/\\\\]+$' }),
  generation: Type.Integer({ minimum: 0 }),
  switchedAt: Type.String(),
  position: Type.Optional(Type.String()),
});
const pointerCheck = Compile(PointerSchema);

export type GenerationPointer = { file: string; generation: number; switchedAt: string; position?: string };

export type CurrentGeneration = { path: string; generation: number; pointer?: GenerationPointer };

export function pointerPathOf(basePath: string): string {
  return `${basePath}.current`;
}

/** `…/readmodels.db` → `…/readmodels.g3.db`. */
export function generationPath(basePath: string, generation: number): string {
  if (generation === 0) return basePath;
  const name = basename(basePath);
  const dot = name.lastIndexOf('.');
  const file = dot > 0 ? `${name.slice(0, dot)}.g${generation}${name.slice(dot)}` : `${name}.g${generation}`;
  return join(dirname(basePath), file);
}

export class GenerationPointerError extends Error {
  override name = 'GenerationPointerError';
}

/** The pointer, or undefined when there is none (generation 0: the configured path). */
export function readPointer(basePath: string): GenerationPointer | undefined {
  const path = pointerPathOf(basePath);
  const value = readJsonFile(path);
  if (value === undefined) return undefined;
  if (!pointerCheck.Check(value)) throw new GenerationPointerError(`${path} is not a read-model pointer (delete it to use ${basePath})`);
  return value;
}

/** The read-model file in use now. */
export function currentGeneration(basePath: string): CurrentGeneration {
  const pointer = readPointer(basePath);
  if (!pointer) return { path: basePath, generation: 0 };
  return { path: join(dirname(basePath), pointer.file), generation: pointer.generation, pointer };
}

/** Atomically points the service at `file` (a generation file beside `basePath`). */
export function writePointer(basePath: string, pointer: GenerationPointer): void {
  writeJsonFileAtomically(pointerPathOf(basePath), pointer);
}

/** Removes a SQLite file and its -wal / -shm companions. */
export function removeDatabaseFiles(path: string): void {
  for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(`${path}${suffix}`, { force: true });
}

/** What the pointer file looks like now, cheaply (one stat): changes when it is replaced. */
export function pointerStamp(basePath: string): string {
  try {
    const s = statSync(pointerPathOf(basePath), { bigint: true });
    return `${s.ino}:${s.mtimeNs}:${s.size}`;
  } catch {
    return 'none';
  }
}

/** Generation files older than `keepFrom` (their databases), which no pointer names any more. */
export function olderGenerations(basePath: string, keepFrom: number): string[] {
  const out: string[] = [];
  for (let g = 0; g < keepFrom; g++) {
    const p = generationPath(basePath, g);
    if (existsSync(p)) out.push(p);
  }
  return out;
}

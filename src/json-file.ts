/**
 * Small JSON files the service and its tools keep beside their data (the replay's read-model pointer, a
 * migration's checkpoint): read when present, written atomically.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseJson } from './json.js';

/** The file's JSON (prototype keys dropped), or undefined when there is no such file; other errors throw. */
export function readJsonFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if (err instanceof Error && 'code' in err && err.code === 'ENOENT') return undefined;
    throw err;
  }
  return parseJson(text);
}

function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * `value` as the whole content of `path`, all or nothing: written to a temporary file beside it, flushed, renamed
 * over it, and the directory flushed, so a crash leaves the old content or the new one, never a mix.
 */
export function writeJsonFileAtomically(path: string, value: unknown): void {
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(value)}\n`);
  fsyncPath(temporary);
  renameSync(temporary, path);
  fsyncPath(dirname(path));
}

/**
 * The test levels, as package.json's `test:unit`, `test:int` and `test:e2e` scripts define them
 * (tap's `--include` / `--exclude` globs), checked against the files tap runs by default (.taprc's
 * `include`): every test file must belong to exactly one level, so a new file cannot fall through
 * and none runs twice.
 *
 *   unit  pure: deciders, pure workflow decisions, pure helpers; no I/O, no clock, no SQLite
 *   int   the rest in one process: real SQLite, Fastify's inject(), stand-ins and the emulator in-process
 *   e2e   real HTTP servers end to end, child processes, the browser, the sandbox tests
 *
 *   npx tsx scripts/test-levels.ts        # lists each level's files; exits 1 when a file is in none or several
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const LEVELS = ['unit', 'int', 'e2e'] as const;
export type Level = (typeof LEVELS)[number];

type Globs = { include: string[]; exclude: string[] };

/** `**` any number of folders, `*` anything but `/`, `?` one character but `/`; the rest literal. */
export function globToRegExp(glob: string): RegExp {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string;
    if (c === '*' && glob[i + 1] === '*') {
      if (glob[i + 2] === '/') {
        out += '(?:[^/]*/)*';
        i += 2;
      } else {
        out += '.*';
        i += 1;
      }
    } else if (c === '*') out += '[^/]*';
    else if (c === '?') out += '[^/]';
    else out += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${out}$`);
}

/** The `--include=` / `--exclude=` globs of one npm script (quoted or not). */
function globsOf(script: string): Globs {
  const globs: Globs = { include: [], exclude: [] };
  for (const m of script.matchAll(/--(include|exclude)=(?:'([^']*)'|"([^"]*)"|(\S+))/g)) {
    const glob = m[2] ?? m[3] ?? m[4] ?? '';
    (m[1] === 'include' ? globs.include : globs.exclude).push(glob);
  }
  return globs;
}

function matches(globs: Globs, file: string): boolean {
  return globs.include.some((g) => globToRegExp(g).test(file)) && !globs.exclude.some((g) => globToRegExp(g).test(file));
}

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...filesUnder(path));
    else out.push(path);
  }
  return out;
}

/** The files tap runs when given none: .taprc's `include` globs under test/. */
export function defaultTestFiles(root: string): string[] {
  const rc = readFileSync(join(root, '.taprc'), 'utf8');
  const include = [...rc.matchAll(/^\s*-\s*["']?([^"'\s]+)["']?\s*$/gm)].map((m) => m[1] ?? '');
  const all = filesUnder(join(root, 'test')).map((f) => relative(root, f));
  return all.filter((f) => include.some((g) => globToRegExp(g).test(f))).sort();
}

export type LevelMap = { levels: Record<Level, string[]>; problems: string[] };

export function testLevels(root: string): LevelMap {
  const scripts: Record<string, string> = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).scripts ?? {};
  const problems: string[] = [];
  const levels: Record<Level, string[]> = { unit: [], int: [], e2e: [] };
  const globs = new Map<Level, Globs>();
  for (const level of LEVELS) {
    const script = scripts[`test:${level}`];
    if (!script) problems.push(`package.json has no test:${level} script`);
    globs.set(level, globsOf(script ?? ''));
  }
  for (const file of defaultTestFiles(root)) {
    const in_ = LEVELS.filter((level) => matches(globs.get(level) ?? { include: [], exclude: [] }, file));
    if (in_.length === 0) problems.push(`${file} belongs to no test level (package.json test:unit / test:int / test:e2e)`);
    if (in_.length > 1) problems.push(`${file} belongs to several test levels: ${in_.join(', ')}`);
    for (const level of in_) levels[level].push(file);
  }
  return { levels, problems };
}

export function testLevelProblems(root: string): string[] {
  return testLevels(root).problems;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
  const { levels, problems } = testLevels(root);
  for (const level of LEVELS) console.log(`${level} (${levels[level].length}):\n  ${levels[level].join('\n  ')}`);
  for (const p of problems) console.log(p);
  process.exit(problems.length ? 1 : 0);
}

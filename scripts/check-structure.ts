/**
 * The layers of src/, checked from the code's own imports (type-only imports count too):
 *
 *   server.ts
 *   runtime.ts, cli/
 *   app.ts
 *   http/
 *   processes/
 *   integration/, projections/
 *   application/
 *   eventstore/, emulator/
 *   domain/, marketplace/, config.ts, logger.ts, json-file.ts
 *   json.ts, metrics/
 *
 * A file may import files of its own folder, and files of folders on a lower floor; never a folder on
 * its own floor or above. And no import cycle anywhere, inside a folder or across.
 *
 * No function in src/ (declaration, method, accessor, constructor, function expression or arrow
 * function) is longer than MAX_FUNCTION_LINES lines, counted from its first to its last line, nested
 * functions included: a longer one is listed with its file, line and length.
 *
 * And every test file belongs to exactly one test level (scripts/test-levels.ts).
 *
 *   npx tsx scripts/check-structure.ts        # prints what is wrong and exits 1, or one line and exits 0
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { testLevelProblems } from './test-levels.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'src');

/** The unit of a file: its top folder under src/, or the file itself for files directly in src/. */
const floors: Record<string, number> = {
  'domain': 0,
  'marketplace': 0,
  'config.ts': 0,
  'logger.ts': 0,
  'json-file.ts': 0,
  'json.ts': -1,
  'metrics': -1,
  'eventstore': 1,
  'emulator': 1,
  'application': 2,
  'integration': 3,
  'projections': 3,
  'processes': 4,
  'http': 5,
  'app.ts': 6,
  'runtime.ts': 7,
  'cli': 7,
  'server.ts': 8,
};

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...filesUnder(path));
    else if (name.endsWith('.ts')) out.push(path);
  }
  return out;
}

const unitOf = (file: string): string => relative(src, file).split('/')[0] ?? '';

const specifier = /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+['"](\.{1,2}\/[^'"]+)['"]|import\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g;

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(specifier)) {
    const spec = m[1] ?? m[2];
    if (!spec) continue;
    out.push(resolve(dirname(file), spec.replace(/\.js$/, '.ts')));
  }
  return out;
}

const files = filesUnder(src);
const known = new Set(files);
const graph = new Map<string, string[]>();
const problems: string[] = [];

for (const file of files) {
  const unit = unitOf(file);
  const floor = floors[unit];
  if (floor === undefined) problems.push(`${relative(root, file)}: folder '${unit}' has no floor in scripts/check-structure.ts`);
  const targets = importsOf(file).filter((t) => t.startsWith(src));
  graph.set(file, targets.filter((t) => known.has(t)));
  for (const target of targets) {
    if (!known.has(target)) {
      problems.push(`${relative(root, file)} imports ${relative(root, target)}, which does not exist`);
      continue;
    }
    const targetUnit = unitOf(target);
    if (targetUnit === unit) continue;
    const targetFloor = floors[targetUnit];
    if (floor !== undefined && targetFloor !== undefined && targetFloor >= floor) {
      problems.push(
        `${relative(root, file)} (${unit}, floor ${floor}) imports ${relative(root, target)} (${targetUnit}, floor ${targetFloor}): ${targetFloor === floor ? 'sideways' : 'upward'}`,
      );
    }
  }
}

// Cycles: strongly connected components with more than one file (or a file importing itself), Tarjan.
let index = 0;
const indices = new Map<string, number>();
const low = new Map<string, number>();
const stack: string[] = [];
const onStack = new Set<string>();
const cycles: string[][] = [];

function connect(v: string): void {
  indices.set(v, index);
  low.set(v, index);
  index++;
  stack.push(v);
  onStack.add(v);
  for (const w of graph.get(v) ?? []) {
    if (!indices.has(w)) {
      connect(w);
      low.set(v, Math.min(low.get(v) ?? 0, low.get(w) ?? 0));
    } else if (onStack.has(w)) {
      low.set(v, Math.min(low.get(v) ?? 0, indices.get(w) ?? 0));
    }
  }
  if (low.get(v) === indices.get(v)) {
    const component: string[] = [];
    for (;;) {
      const w = stack.pop();
      if (w === undefined) break;
      onStack.delete(w);
      component.push(w);
      if (w === v) break;
    }
    if (component.length > 1 || (graph.get(v) ?? []).includes(v)) cycles.push(component);
  }
}
for (const file of files) if (!indices.has(file)) connect(file);
for (const cycle of cycles) problems.push(`import cycle: ${cycle.map((f) => relative(root, f)).sort().join(' ↔ ')}`);

// Long functions.
const MAX_FUNCTION_LINES = 120;

/** A readable name for a function node: its own name, or the variable / property / call it stands in. */
function nameOf(node: ts.SignatureDeclaration, source: ts.SourceFile): string {
  if (node.name) return node.name.getText(source);
  if (ts.isConstructorDeclaration(node)) return 'constructor';
  const parent = node.parent;
  if (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent) || ts.isPropertyDeclaration(parent)) {
    return parent.name.getText(source);
  }
  if (ts.isCallExpression(parent)) return `(argument of ${parent.expression.getText(source).slice(0, 60)})`;
  return '(anonymous)';
}

type LongFunction = { file: string; line: number; lines: number; name: string };

function longFunctions(file: string): LongFunction[] {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const found: LongFunction[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body) {
      const first = source.getLineAndCharacterOfPosition(node.getStart(source)).line;
      const last = source.getLineAndCharacterOfPosition(node.getEnd()).line;
      const lines = last - first + 1;
      if (lines > MAX_FUNCTION_LINES) found.push({ file: relative(root, file), line: first + 1, lines, name: nameOf(node, source) });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

for (const long of files.flatMap(longFunctions).sort((a, b) => b.lines - a.lines)) {
  problems.push(`${long.file}:${long.line}: ${long.name} is ${long.lines} lines long (at most ${MAX_FUNCTION_LINES})`);
}

// Test levels.
problems.push(...testLevelProblems(root));

const edges = [...graph.values()].reduce((n, targets) => n + targets.length, 0);
if (problems.length) {
  for (const p of problems) console.log(p);
  console.log(`structure: ${problems.length} problem(s) in ${files.length} files, ${edges} imports`);
  process.exit(1);
}
console.log(
  `structure: ${files.length} files, ${edges} imports: no cycle, nothing imports sideways or upward, no function over ${MAX_FUNCTION_LINES} lines; every test file in one level`,
);

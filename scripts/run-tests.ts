/**
 * Runs the test files the `--include` / `--exclude` globs select (the same globs and matching as the test
 * levels, scripts/test-levels.ts), each as its own `node --import tsx` process, two at a time, and prints a
 * line per file and tap's closing summary line. It is what `npm run test:unit` uses: the pure tests need
 * no coverage and none of tap's runner plugins, and tap's TypeScript loader costs about 2.5 s of CPU per
 * file, several times what the tests themselves take. `npm test` still runs every file through tap.
 *
 *   npx tsx scripts/run-tests.ts --include='test/domain/**\/*.test.ts' [--exclude=…] [--jobs=2]
 *
 * Exit code 0 when every file passed, 1 otherwise (a file's output is printed when it failed).
 */
import { spawn } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultTestFiles, globToRegExp } from './test-levels.js';

type Result = { file: string; code: number | null; ms: number; output: string; total: number; pass: number; fail: number; skip: number };

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function argValues(name: string): string[] {
  return process.argv.slice(2).flatMap((a) => (a.startsWith(`--${name}=`) ? [a.slice(name.length + 3).replace(/^'(.*)'$/, '$1')] : []));
}

function runFile(file: string): Promise<Result> {
  const started = Date.now();
  return new Promise((done) => {
    const child = spawn(process.execPath, ['--import', 'tsx', file], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('close', (code) => {
      // tap's own closing line for the file, e.g. `# { total: 27, pass: 26, fail: 1 }`
      const summary = [...output.matchAll(/^# \{ total: (\d+)(.*)\}$/gm)].pop();
      const count = (key: string) => Number(new RegExp(`${key}: (\\d+)`).exec(summary?.[2] ?? '')?.[1] ?? 0);
      done({ file, code, ms: Date.now() - started, output, total: Number(summary?.[1] ?? 0), pass: count('pass'), fail: count('fail'), skip: count('skip') + count('todo') });
    });
  });
}

async function main(): Promise<void> {
  const include = argValues('include').map(globToRegExp);
  const exclude = argValues('exclude').map(globToRegExp);
  const jobs = Number(argValues('jobs')[0] ?? 2);
  const files = defaultTestFiles(root).filter((f) => include.some((g) => g.test(f)) && !exclude.some((g) => g.test(f)));
  if (files.length === 0) {
    console.log('no test file matches the given --include/--exclude globs');
    process.exit(1);
  }
  const queue = [...files];
  const results: Result[] = [];
  const worker = async (): Promise<void> => {
    for (let file = queue.shift(); file !== undefined; file = queue.shift()) {
      const r = await runFile(file);
      results.push(r);
      const ok = r.code === 0 && r.fail === 0 && r.total > 0;
      console.log(`${ok ? 'ok' : 'not ok'} ${results.length} - ${file} # time=${r.ms}ms`);
      if (!ok) console.log(r.output.replace(/^/gm, '    '));
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, jobs) }, worker));
  const sum = (key: 'total' | 'pass' | 'fail' | 'skip') => results.reduce((n, r) => n + r[key], 0);
  const failedFiles = results.filter((r) => r.code !== 0 || r.fail > 0 || r.total === 0).length;
  console.log(`# { total: ${sum('total')}, pass: ${sum('pass')}${sum('fail') ? `, fail: ${sum('fail')}` : ''}${sum('skip') ? `, skip: ${sum('skip')}` : ''} }`);
  console.log(`# ${files.length} files, ${failedFiles} failed`);
  process.exit(failedFiles ? 1 : 0);
}

void main();

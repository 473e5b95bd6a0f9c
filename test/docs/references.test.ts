/**
 * The repository is self-contained: what the code and the docs cite exists in the repository.
 *
 * - Every `docs/marketplace.md §N` (and the `§M`, `§M–§K` that follow it in the same list) names a
 *   heading of docs/marketplace.md (`## N. …` or `### N …`); so does every `§N` inside that file.
 * - Nothing in src/, test/ (but test/fixtures/), docs/ or README.md cites the old reference file
 *   outside the repository.
 * - Every repository path in backticks or in a relative link in README.md and docs/*.md exists
 *   (`src/…`, `test/…`, `docs/…`, `scripts/…`; a `:line` suffix is ignored, a `*` matches a file name part).
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const rel = (path: string): string => relative(root, path).split('\\').join('/');

function filesUnder(dir: string, skip: (path: string) => boolean = () => false): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (skip(rel(path))) continue;
    if (statSync(path).isDirectory()) out.push(...filesUnder(path, skip));
    else out.push(path);
  }
  return out;
}

/** Text files only (no NUL byte in them). */
function readText(path: string): string | undefined {
  const buffer = readFileSync(path);
  return buffer.includes(0) ? undefined : buffer.toString('utf8');
}

const docFiles = [join(root, 'README.md'), ...readdirSync(join(root, 'docs')).filter((n) => n.endsWith('.md')).map((n) => join(root, 'docs', n))];
const citingFiles = [
  ...filesUnder(join(root, 'src')),
  ...filesUnder(join(root, 'test'), (p) => p === 'test/fixtures'),
  ...filesUnder(join(root, 'docs')),
  join(root, 'README.md'),
];
const texts = new Map<string, string>();
for (const file of citingFiles) {
  const text = readText(file);
  if (text !== undefined) texts.set(rel(file), text);
}

const marketplaceDoc = readFileSync(join(root, 'docs/marketplace.md'), 'utf8');
const headings = new Set([...marketplaceDoc.matchAll(/^#{2,3} (\d+(?:\.\d+)*)\.?\s/gm)].map((m) => m[1] as string));

/** The section numbers of one `§…` list: `§3.1, §14.1` → 3.1, 14.1; `§3.6–3.8` and `§7–§8` → both ends. */
function sectionsOf(list: string): string[] {
  return [...list.matchAll(/\d+(?:\.\d+)*/g)].map((m) => m[0]);
}

const sectionList = String.raw`§\d+(?:\.\d+)*(?:\s*[–-]\s*§?\d+(?:\.\d+)*)?(?:,\s*§\d+(?:\.\d+)*(?:\s*[–-]\s*§?\d+(?:\.\d+)*)?)*`;

t.test('docs/marketplace.md has numbered sections', async (t) => {
  for (const n of ['1', '3.1', '7.2', '14.1']) t.ok(headings.has(n), `§${n} is a heading`);
});

t.test('every docs/marketplace.md § reference names a heading that exists', async (t) => {
  const cited = new RegExp(String.raw`docs/marketplace\.md ?(${sectionList})`, 'g');
  let references = 0;
  for (const [file, text] of texts) {
    const lists = [...text.matchAll(cited)].map((m) => m[1] as string);
    // Inside docs/marketplace.md itself a bare `§N` refers to the same file.
    if (file === 'docs/marketplace.md') lists.push(...[...text.matchAll(new RegExp(sectionList, 'g'))].map((m) => m[0]));
    for (const list of lists) {
      for (const n of sectionsOf(list)) {
        references += 1;
        if (!headings.has(n)) t.fail(`${file}: §${n} (in "${list}") is not a heading of docs/marketplace.md`);
      }
    }
  }
  t.ok(references > 0, `${references} references checked`);
});

t.test('nothing cites a reference file outside the repository', async (t) => {
  const outside = new RegExp(String.raw`\b${'API'}\.md\b`);
  for (const [file, text] of texts) {
    const lines = text.split('\n').flatMap((line, i) => (outside.test(line) ? [i + 1] : []));
    t.same(lines, [], `${file} cites no file outside the repository`);
  }
});

/** `src/a/b.ts:12` → `src/a/b.ts`; a `*` in the last part matches any run of characters. */
function pathExists(path: string): boolean {
  const clean = path.replace(/:\d+.*$/, '').replace(/[.,;:)]+$/, '');
  if (!clean.includes('*')) return existsSync(join(root, clean));
  const dir = dirname(clean);
  const parts = clean.slice(dir.length + 1).split('*').map((part) => part.replace(/[.+?^$()|[\]\\{}]/g, '\\$&'));
  const pattern = new RegExp('^' + parts.join('.*') + '$');
  return existsSync(join(root, dir)) && readdirSync(join(root, dir)).some((name) => pattern.test(name));
}

t.test('every repository path in README.md and docs/*.md exists', async (t) => {
  let paths = 0;
  for (const file of docFiles) {
    const text = readFileSync(file, 'utf8');
    const inBackticks = [...text.matchAll(/`((?:src|test|docs|scripts)\/[^`\s]*)`/g)].map((m) => m[1] as string);
    for (const path of inBackticks) {
      paths += 1;
      t.ok(pathExists(path), `${rel(file)}: \`${path}\` exists`);
    }
    // Relative links, resolved from the linking file's folder.
    const links = [...text.matchAll(/\]\(([^)\s#]+)(?:#[^)]*)?\)/g)].map((m) => m[1] as string).filter((l) => !/^[a-z]+:/i.test(l));
    for (const link of links) {
      paths += 1;
      const target = rel(resolve(dirname(file), link));
      t.ok(pathExists(target), `${rel(file)}: link ${link} exists`);
    }
  }
  t.ok(paths > 20, `${paths} paths checked`);
});

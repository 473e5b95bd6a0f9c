/**
 * Node arguments for a test's child process that runs one of our TypeScript entry points.
 *
 * Under tap, the child gets the same loaders as the test process (tap's TypeScript loader and its coverage
 * hooks), so the child's coverage maps onto the sources exactly as the parent's does. A child that ran
 * through another transform (tsx's esbuild output) reported coverage that tap merged onto the wrong lines
 * of the TypeScript files, lowering their figures at random. Outside tap (a test run by hand), tsx loads it.
 */
export function childNodeArgs(entry: string, ...args: string[]): string[] {
  const loaders = process.execArgv.some((a) => a.includes('@tapjs/typescript') || a.includes('tsx')) ? process.execArgv : ['--import', 'tsx'];
  return [...loaders, entry, ...args];
}

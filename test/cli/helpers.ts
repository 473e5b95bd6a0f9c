/** Shared by the CLI tests: the CLI run in-process with its output captured. */
import { PassThrough } from 'node:stream';
import { main } from '../../src/cli/main.js';

export type Ran = { code: number; out: string; err: string; stdout: string };

/** `fulfillment-ledger <argv>` in-process against the environment given (no TTY: no progress bar). */
export async function cli(argv: string[], env: Record<string, string>, signal?: AbortSignal): Promise<Ran> {
  const out: string[] = [];
  const err: string[] = [];
  const chunks: Buffer[] = [];
  const stdout = new PassThrough();
  stdout.on('data', (c: Buffer) => chunks.push(c));
  const code = await main(argv, { LOG_LEVEL: 'silent', ...env }, { out: (l) => out.push(l), err: (l) => err.push(l), stdout, tty: false }, signal);
  stdout.end();
  return { code, out: out.join('\n'), err: err.join('\n'), stdout: Buffer.concat(chunks).toString('utf8') };
}

/** The one JSON document a --json command prints. */
export function jsonOf(ran: Ran): unknown {
  return JSON.parse(ran.out) as unknown;
}

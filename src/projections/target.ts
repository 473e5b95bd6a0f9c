/**
 * A read-model target: where the projections write and the read API reads. Two kinds, one contract:
 *
 * - SQLite (`sqlite.target.ts`, the default): one file beside the events, one process writes at a time.
 * - PostgreSQL (`postgres.target.ts`, `READMODELS_URL=postgres://…`): one schema shared by every instance.
 *
 * A transaction (`transaction(fn)`) commits all of `fn`'s statements or none; the runner stores a batch's rows
 * and the checkpoints they reflect in one. `claim(names)` says which projections this process may apply now:
 * SQLite answers all of them (its write lock and the checkpoint re-read inside each transaction keep two
 * writers from applying an event twice), PostgreSQL only those whose advisory lock this process holds.
 */
import type { Dialect } from './dialect.js';
import type { Projection } from './projection.js';
import type { ReadModelSql } from './readmodel-sql.js';

export type ReadModelTarget = {
  readonly dialect: Dialect;
  /** For logs and the read status: the file, or the PostgreSQL schema (never a password). */
  readonly where: string;
  /** Reads outside any transaction (the read API): SQLite's connection, or PostgreSQL's pool. */
  readonly read: ReadModelSql;
  transaction<T>(fn: (tx: ReadModelSql) => Promise<T>): Promise<T>;
  /** The names, of those given, that this process may apply now (held until `release` or `close`). */
  claim(names: readonly string[]): Promise<Set<string>>;
  isOpen(): boolean;
  close(): Promise<void>;
  /** PostgreSQL following the live generation: move to the schema a `TargetMoved` named (same object, new tables). */
  moveTo?(where: string): Promise<void>;
  /** After projections were reset (their tables dropped and recreated): PostgreSQL's live target recreates the analysts' views over them. */
  afterReset?(projections: readonly Projection[]): Promise<void>;
};

/** Thrown inside a transaction of a target that follows the live generation, once another one is live. */
export class TargetMoved extends Error {
  override name = 'TargetMoved';
  constructor(readonly to: string) {
    super(`the live read models moved to ${to}`);
  }
}

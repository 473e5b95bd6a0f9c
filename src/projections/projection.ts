/**
 * A projection: `apply(tx, event)` turns one recorded event into a change of its read-model tables.
 * It is `evolve` with a database as the state (fmodel's `View`), SQLite or PostgreSQL behind the same
 * three calls (`ReadModelSql`, readmodel-sql.ts) and one SQL text: the runner calls it inside the
 * transaction that also stores the projection's checkpoint, so a change and the position it reflects
 * commit together. `apply` must be deterministic (no clock, no I/O besides `db`) and must make a
 * replayed event a no-op on its own as well: every row stores the stream revision or global position
 * it reflects, and an event at or before it changes nothing.
 *
 * A batch (optional, `beginBatch`): the runner applies many events in one transaction. A projection that
 * updates the same rows many times may open a batch first: until `flush()`, `apply` keeps its changes in memory
 * (each row read once, changed in memory, written once), `flush()` writes them inside the same transaction, and
 * `close()` ends the batch (dropping whatever was not flushed: the transaction is rolled back then). Without an
 * open batch, `apply` writes at once, so a caller that only knows `apply` gets the same tables.
 */
import type { RecordedEvent } from '../eventstore/eventstore.js';
import type { ReadModelSql } from './readmodel-sql.js';

/** What a projection writes with: a transaction on either target. */
export type ReadModelDb = ReadModelSql;

export type Projection = {
  /** Stable name: the key of its row in `projection_state`. */
  readonly name: string;
  /** Bump it whenever `apply` or `schemaSql` changes what the tables hold: the runner then rebuilds it from the start. */
  readonly version: number;
  readonly description: string;
  /** Idempotent DDL (`CREATE … IF NOT EXISTS`) for every table, index and view it owns, in SQLite's words (`ddlFor` says it for PostgreSQL). */
  readonly schemaSql: string;
  /** The tables it owns, dropped and recreated by a rebuild. */
  readonly tables: readonly string[];
  /** The views it owns (dropped first on a rebuild). */
  readonly views: readonly string[];
  /** Streams it reads (`<category>-` prefixes); the runner subscribes to their union. */
  readonly streamPrefixes: readonly string[];
  /** Event types `apply` is called with; other events of those streams only advance the checkpoint. */
  readonly handles: ReadonlySet<string>;
  apply(db: ReadModelDb, event: RecordedEvent): Promise<void>;
  /** Optional: open a batch on `db` (see above); the tables after `flush()` equal those of `apply` event by event. */
  beginBatch?(db: ReadModelDb): ProjectionBatch;
};

export type ProjectionBatch = {
  /** Writes what the batch holds (inside the caller's transaction). */
  flush(): Promise<void>;
  /** Ends the batch; `apply` writes at once again. Whatever was not flushed is dropped. */
  close(): void;
};

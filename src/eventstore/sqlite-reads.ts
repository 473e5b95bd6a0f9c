/**
 * Prefix reads on the embedded store whose cost follows what they return, not the store's size.
 *
 * Every event row carries its `category`: the stream id up to and including the first '-' (the whole id when it
 * has none; src/domain/streams.ts's convention), indexed with its position (`events_category`). A prefix that is a
 * whole category (`subscription-`, what `categoryPrefix` builds) is read as a range of that index, already in
 * position order: a page costs the rows it returns. Several prefixes are one range each, merged by position by
 * SQLite (a compound select). A prefix that is not a whole category (`subscription-6f1`, `sub`) falls back to a range on stream_id
 * (UNIQUE(stream_id, revision)) and a sort of what matches: correct, and proportional to the matching streams.
 *
 * The statement of a prefix set is prepared once and kept (`PrefixReads`).
 */
import type { Database as Db, Statement } from 'better-sqlite3';

/** The category of a stream id as stored in `events.category`: up to and including the first '-'. */
export function categoryOf(streamId: string): string {
  const i = streamId.indexOf('-');
  return i < 0 ? streamId : streamId.slice(0, i + 1);
}

/** The same as categoryOf, in SQL, for a column or NEW.stream_id. */
export function categorySql(column: string): string {
  return `CASE WHEN instr(${column}, '-') > 0 THEN substr(${column}, 1, instr(${column}, '-')) ELSE ${column} END`;
}

/** One arm of a prefix set's read: a condition after `position > ?`, and its parameters. */
export type ReadTerm = { where: string; params: string[] };

/** Prefixes covered by a shorter one go (they select nothing more), so the terms select disjoint rows. An empty prefix means every stream. */
export function normalisePrefixes(prefixes: readonly string[] | undefined): string[] | undefined {
  if (!prefixes || prefixes.length === 0 || prefixes.includes('')) return undefined;
  const sorted = [...new Set(prefixes)].sort();
  const kept: string[] = [];
  for (const p of sorted) if (!kept.some((k) => p.startsWith(k))) kept.push(p);
  return kept;
}

/** How one normalised prefix is read: an index range on its category when it is one, else a stream_id range. */
export function termFor(prefix: string): ReadTerm {
  if (categoryOf(prefix) === prefix && prefix.endsWith('-')) return { where: 'category = ?', params: [prefix] };
  return { where: 'stream_id >= ? AND stream_id < ?', params: [prefix, `${prefix}\uffff`] };
}

/**
 * The statement a prefix set is read with, one arm per prefix: `UNION ALL` of disjoint arms with one
 * `ORDER BY position LIMIT ?`, which SQLite runs as a merge of the arms' index ranges (no sort, and it stops
 * at the limit). `args(after, limit)` gives its parameters. Exported for the query-plan test.
 */
export function readStatement(prefixes: readonly string[] | undefined): { sql: string; args: (after: number, limit: number) => unknown[] } {
  const kept = normalisePrefixes(prefixes);
  if (!kept) return { sql: 'SELECT * FROM events WHERE position > ? ORDER BY position LIMIT ?', args: (after, limit) => [after, limit] };
  const terms = kept.map(termFor);
  const sql = `${terms.map((t) => `SELECT * FROM events WHERE position > ? AND ${t.where}`).join(' UNION ALL ')} ORDER BY position LIMIT ?`;
  return { sql, args: (after, limit) => [...terms.flatMap((t) => [after, ...t.params]), limit] };
}

type Prepared<Row> = { stmt: Statement<unknown[], Row>; args: (after: number, limit: number) => unknown[] };

/** At most this many prefix sets keep their statements; a store sees a handful (one per projection set or process). */
const MAX_CACHED_SETS = 64;

/** The prepared statement per distinct prefix set, and the page read. */
export class PrefixReads<Row> {
  private readonly cache = new Map<string, Prepared<Row>>();
  /** How many page queries ran: what the wake-up and idle-poll tests count. */
  queries = 0;

  constructor(private readonly db: Db) {}

  private prepared(prefixes: readonly string[] | undefined): Prepared<Row> {
    const key = JSON.stringify(normalisePrefixes(prefixes) ?? []);
    let plan = this.cache.get(key);
    if (!plan) {
      const { sql, args } = readStatement(prefixes);
      plan = { stmt: this.db.prepare<unknown[], Row>(sql), args };
      if (this.cache.size >= MAX_CACHED_SETS) this.cache.clear();
      this.cache.set(key, plan);
    }
    return plan;
  }

  /** The first `limit` rows after `after` in position order, of every stream matching one of the prefixes. */
  page(after: number, limit: number, prefixes: readonly string[] | undefined): Row[] {
    const plan = this.prepared(prefixes);
    this.queries++;
    return plan.stmt.all(...plan.args(after, limit));
  }
}

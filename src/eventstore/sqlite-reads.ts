/**
 * Prefix reads on the embedded store whose cost follows what they return, not the store's size.
 *
 * Every event row carries its `category`: the stream id up to and including the first '-' (the whole id when it
 * has none; src/domain/streams.ts's convention), indexed with its position (`events_category`). A prefix that is a
 * whole category (`subscription-`, what `categoryPrefix` builds) is read as a range of that index, already in
 * position order: a page costs the rows it returns. Several prefixes are read one range each and merged by position
 * here. A prefix that is not a whole category (`subscription-6f1`, `sub`) falls back to a range on stream_id
 * (UNIQUE(stream_id, revision)) and a sort of what matches: correct, and proportional to the matching streams.
 *
 * The statements of a prefix set are prepared once and kept (`PrefixReads`).
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

/** One read of a prefix set: SQL with `position > ?` first and `LIMIT ?` last, and the parameters in between. */
export type ReadTerm = { sql: string; params: string[] };

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
  if (categoryOf(prefix) === prefix && prefix.endsWith('-')) {
    return { sql: 'SELECT * FROM events WHERE position > ? AND category = ? ORDER BY position LIMIT ?', params: [prefix] };
  }
  return {
    sql: 'SELECT * FROM events WHERE position > ? AND stream_id >= ? AND stream_id < ? ORDER BY position LIMIT ?',
    params: [prefix, `${prefix}\uffff`],
  };
}

/** The terms a prefix set is read with (exported for the query-plan test). */
export function readTerms(prefixes: readonly string[] | undefined): ReadTerm[] {
  const kept = normalisePrefixes(prefixes);
  if (!kept) return [{ sql: 'SELECT * FROM events WHERE position > ? ORDER BY position LIMIT ?', params: [] }];
  return kept.map(termFor);
}

type Prepared<Row> = { stmt: Statement<unknown[], Row>; params: string[] };

/** At most this many prefix sets keep their statements; a store sees a handful (one per projection set or process). */
const MAX_CACHED_SETS = 64;

/** Prepared statements per distinct prefix set, and the page read that merges their ranges. */
export class PrefixReads<Row extends { position: number }> {
  private readonly cache = new Map<string, Array<Prepared<Row>>>();
  /** How many page queries ran (one per term): what the wake-up and idle-poll tests count. */
  queries = 0;

  constructor(private readonly db: Db) {}

  private prepared(prefixes: readonly string[] | undefined): Array<Prepared<Row>> {
    const key = JSON.stringify(normalisePrefixes(prefixes) ?? []);
    let plan = this.cache.get(key);
    if (!plan) {
      plan = readTerms(prefixes).map((t) => ({ stmt: this.db.prepare<unknown[], Row>(t.sql), params: t.params }));
      if (this.cache.size >= MAX_CACHED_SETS) this.cache.clear();
      this.cache.set(key, plan);
    }
    return plan;
  }

  /** The first `limit` rows after `after` in position order, of every stream matching one of the prefixes. */
  page(after: number, limit: number, prefixes: readonly string[] | undefined): Row[] {
    const plan = this.prepared(prefixes);
    this.queries += plan.length;
    if (plan.length === 1) {
      const only = plan[0] as Prepared<Row>;
      return only.stmt.all(after, ...only.params, limit);
    }
    const rows = plan.flatMap((p) => p.stmt.all(after, ...p.params, limit));
    rows.sort((a, b) => a.position - b.position);
    return rows.length > limit ? rows.slice(0, limit) : rows;
  }
}

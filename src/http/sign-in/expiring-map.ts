/**
 * A small bounded map whose entries expire: the sign-ins under way (keyed by OIDC `state`) and the
 * purchase tokens handed from a finished sign-in to the landing page. In memory, per process: a restart
 * in the middle of a sign-in forgets it, and the customer is asked to open the page from Microsoft again
 * (docs/landing-sign-in.md). When full, the oldest entry goes first.
 */
export class ExpiringMap<V> {
  readonly #entries = new Map<string, { value: V; expiresAt: number }>();

  constructor(
    private readonly options: { ttlMs: number; maxEntries: number; now: () => number },
  ) {}

  get size(): number {
    return this.#entries.size;
  }

  set(key: string, value: V): void {
    const now = this.options.now();
    this.#sweep(now);
    this.#entries.delete(key);
    while (this.#entries.size >= this.options.maxEntries) {
      const oldest = this.#entries.keys().next();
      if (oldest.done) break;
      this.#entries.delete(oldest.value);
    }
    this.#entries.set(key, { value, expiresAt: now + this.options.ttlMs });
  }

  /** The live value, left in place. */
  get(key: string): V | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= this.options.now()) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry.value;
  }

  /** The live value, removed: it can be taken once. */
  take(key: string): V | undefined {
    const value = this.get(key);
    this.#entries.delete(key);
    return value;
  }

  delete(key: string): void {
    this.#entries.delete(key);
  }

  /** Drop expired entries from the front (insertion order is expiry order: one ttl for all). */
  #sweep(now: number): void {
    for (const [key, entry] of this.#entries) {
      if (entry.expiresAt > now) break;
      this.#entries.delete(key);
    }
  }
}

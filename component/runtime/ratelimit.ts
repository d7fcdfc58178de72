/**
 * A sliding-window counter per key (a user, a sending domain): at most `limit` events in the last `windowMs`.
 * Memory is bounded on both axes, so the limiter itself cannot be grown without bound by many users: a key keeps
 * at most `limit` timestamps, keys whose window emptied are pruned as they are met, and past `maxKeys` the least
 * recently used key is dropped (Map order is kept as recency order by re-inserting on every hit).
 *
 * Dropping a key forgets its count, so `maxKeys` must be far above the number of keys active in one window; the
 * default (limits.rateLimiterKeys) is 100,000 per limiter, a few MB at most.
 */
export interface RateLimiterOptions {
  limit: number;
  windowMs: number;
  maxKeys: number;
  now?: () => number;
}

export class RateLimiter {
  private readonly hits = new Map<string, number[]>();
  private readonly now: () => number;

  constructor(private readonly opts: RateLimiterOptions) {
    this.now = opts.now ?? Date.now;
  }

  get limit(): number {
    return this.opts.limit;
  }

  /** Keys currently remembered (for tests and metrics). */
  get size(): number {
    return this.hits.size;
  }

  /** Milliseconds until `key` may act again; 0 when it is under its limit now. Does not record anything. */
  retryAfter(key: string): number {
    const times = this.live(key);
    if (times.length < this.opts.limit) return 0;
    return Math.max(1, (times[0] as number) + this.opts.windowMs - this.now());
  }

  /** Records one event for `key`. */
  hit(key: string): void {
    const times = this.live(key);
    times.push(this.now());
    // Only the newest `limit` matter: the oldest of them decides when the key is under its limit again.
    if (times.length > this.opts.limit) times.splice(0, times.length - this.opts.limit);
    this.hits.delete(key);
    this.hits.set(key, times);
    if (this.hits.size > this.opts.maxKeys) this.prune();
  }

  /** Drops expired keys, then the least recently used ones past maxKeys. */
  prune(): void {
    const cutoff = this.now() - this.opts.windowMs;
    for (const [k, times] of this.hits) {
      if ((times[times.length - 1] ?? 0) <= cutoff) this.hits.delete(k);
    }
    for (const k of this.hits.keys()) {
      if (this.hits.size <= this.opts.maxKeys) break;
      this.hits.delete(k);
    }
  }

  private live(key: string): number[] {
    const times = this.hits.get(key);
    if (!times) return [];
    const cutoff = this.now() - this.opts.windowMs;
    let drop = 0;
    while (drop < times.length && (times[drop] as number) <= cutoff) drop++;
    if (drop) times.splice(0, drop);
    if (times.length === 0) this.hits.delete(key);
    return times;
  }
}

/** "in 42 s" / "in 3 min": when a client may retry, for error texts. */
export function retryText(ms: number): string {
  const s = Math.ceil(ms / 1000);
  return s < 120 ? `${s} s` : `${Math.ceil(s / 60)} min`;
}

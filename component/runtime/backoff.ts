/** Capped exponential backoff with full jitter (AWS architecture blog's "full jitter"): spreads reconnect storms. */
export function backoffDelay(
  attempt: number,
  baseMs: number,
  maxMs: number,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  // Never below base/2, so a tight loop cannot form even when random() returns ~0.
  return Math.max(baseMs / 2, Math.floor(random() * ceiling));
}

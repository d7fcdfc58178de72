/** A FIFO async mutex: the SQLite write lock of one process (docs/REDESIGN.md §3.1). */
export class Mutex {
  private held = false;
  private readonly waiters: Array<() => void> = [];

  /** True while someone holds it or waits for it: a caller that wants to go first must queue instead. */
  get busy(): boolean {
    return this.held || this.waiters.length > 0;
  }

  /** Resolves with the release function once the caller holds the lock; release exactly once. */
  acquire(): Promise<() => void> {
    return new Promise((resolve) => {
      const grant = () => {
        this.held = true;
        let released = false;
        resolve(() => {
          if (released) return;
          released = true;
          const next = this.waiters.shift();
          if (next) next();
          else this.held = false;
        });
      };
      if (!this.held) grant();
      else this.waiters.push(grant);
    });
  }
}

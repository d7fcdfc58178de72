/**
 * One run at a time, and none lost: the shape every queue loop has (job channels, observers). A kick while a run is
 * going marks it to run once more when it ends, so work that arrived during a run is never left until the poll.
 */
export class SingleFlight {
  private running = false;
  private again = false;
  private inFlight: Promise<void> | null = null;

  /** `run` is the loop's whole round; it must not throw (log inside it): a throw would only be swallowed here. */
  constructor(private readonly run: () => Promise<void>) {}

  kick(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    this.inFlight = this.run()
      .catch(() => undefined)
      .finally(() => {
        this.running = false;
        this.inFlight = null;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  /** Resolves when the current run (if any) and the ones it queued have ended. For tests and stop(). */
  async idle(): Promise<void> {
    while (this.inFlight) await this.inFlight;
  }
}

/**
 * What both backends' transaction objects share: the unit of work's frame (its name, and whether it is still open,
 * carried through its async calls by AsyncLocalStorage) and its one clock reading. A backend's ReadTx/Tx extends
 * FramedTx and adds how it runs SQL.
 */
import type { AsyncLocalStorage } from "node:async_hooks";
import type { Logger } from "pino";
import type { Dialect } from "./store.js";

export interface Frame {
  kind: "tx" | "read";
  name: string;
  /** False once the unit of work ended: async work it left behind is no longer "inside" it. */
  open: boolean;
}

export abstract class FramedTx {
  constructor(
    readonly dialect: Dialect,
    private readonly clock: () => number,
    protected readonly frame: Frame,
  ) {}

  private reading: number | undefined;
  /** Read from the clock on first use, then fixed (a unit of work that never asks reads no clock). */
  get now(): number {
    this.reading ??= this.clock();
    return this.reading;
  }

  /** Refuses use after the unit of work (or read) ended: a straggling await must not write into the next one. */
  protected live(): void {
    if (!this.frame.open) throw new Error(`the ${this.frame.kind} "${this.frame.name}" has already ended`);
  }
}

/**
 * After COMMIT, on either backend: commit observers (metrics, the fault hook), then the unit of work's
 * afterCommit hooks, each in order. They run outside the unit of work's async context, so a hook may start the
 * next unit of work; a throwing one is logged and never undoes the commit or stops the others.
 */
export function runAfterCommit(
  frames: AsyncLocalStorage<Frame>,
  log: Logger,
  observers: ReadonlyArray<(name: string, ms: number) => void>,
  hooks: ReadonlyArray<() => void>,
  name: string,
  ms: number,
): void {
  const safely = (event: string, f: () => void): void => {
    try {
      f();
    } catch (e) {
      log.error({ event, name, err: (e as Error).message }, "a post-commit hook threw");
    }
  };
  frames.exit(() => {
    for (const o of observers) safely("commit-observer-failed", () => o(name, ms));
    for (const h of hooks) safely("after-commit-failed", h);
  });
}

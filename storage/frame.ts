/**
 * What both backends' transaction objects share: the unit of work's frame (its name, and whether it is still open,
 * carried through its async calls by AsyncLocalStorage) and its one clock reading. A backend's ReadTx/Tx extends
 * FramedTx and adds how it runs SQL.
 */
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

/**
 * SCAFFOLDING (issue 8 step S2a; docs/ARCHITECTURE.md "Redesign scaffolding"): the stream half of QueueTx
 * (append, appendToAudience, appendSelect, retract, payload, pending). The signature is final; step S4 fills
 * the body (stream-repo.ts). Until then every use throws, and nothing in the running app calls it.
 */
import type { AudiencePath } from "../audience/api.js";
import type { Part } from "../uow.js";
import type { StreamKind, StreamQueueTx } from "./api.js";

/** Built once per process by createCardlink from the registries (§3.6). */
export interface StreamTxOptions {
  /** The registered kind of that name (coalescing rule), or undefined: appending an unknown kind is a bug. */
  readonly kind: (name: string) => StreamKind | undefined;
  /** The registered audience paths, for appendToAudience (S4 starts with the binding path's fixed SQL). */
  readonly paths: readonly AudiencePath[];
}

export function streamTx(o: StreamTxOptions): Part<StreamQueueTx> {
  void o;
  return () => {
    throw new Error("queue stream: not built yet (issue 8 step S4)");
  };
}

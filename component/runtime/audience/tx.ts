/**
 * SCAFFOLDING (issue 8 step S2a; docs/ARCHITECTURE.md "Redesign scaffolding"): the audience part of a unit of
 * work and of a read context. The signatures are final; step S6 fills the bodies (compose.ts, tombstones.ts).
 * Until then every use throws, and nothing in the running app calls it.
 */
import type { Part, ReadPart } from "../uow.js";
import type { AudiencePath, AudienceRead, AudienceTx } from "./api.js";

/** Built once per process by createCardlink from every module's registered paths (§3.6). */
export interface AudienceOptions {
  readonly paths: readonly AudiencePath[];
}

export function audienceParts(o: AudienceOptions): { tx: Part<AudienceTx>; read: ReadPart<AudienceRead> } {
  void o;
  return {
    tx: () => notBuilt(),
    read: () => notBuilt(),
  };
}

function notBuilt(): never {
  throw new Error("audience: not built yet (issue 8 step S6)");
}

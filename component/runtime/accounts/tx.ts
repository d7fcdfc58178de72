/**
 * SCAFFOLDING (issue 8 step S2a; docs/ARCHITECTURE.md "Redesign scaffolding"): the accounts part of a unit of
 * work and of a read context. The signatures are final; step S3 fills the bodies (repo.ts, directory.ts with the
 * JID ↔ id cache). Until then every use throws, and nothing in the running app calls it.
 */
import type { EventBus } from "../events.js";
import type { Part, ReadPart } from "../uow.js";
import type { AccountsRead, AccountsTx } from "./api.js";

/** Built once per process by createCardlink; S3 may add what its directory needs. */
export interface AccountsOptions {
  /** accounts.cacheSize (§3.7): JID ↔ id entries kept. */
  readonly cacheSize: number;
  /** accounts.cacheTtlMs (§3.7): how long a cached entry is trusted across processes. */
  readonly cacheTtlMs: number;
  /** For the post-commit `identifier.changed` cache invalidation. */
  readonly events: EventBus;
}

/** One process-wide directory (cache) shared by both halves, so a JID resolved in a read is cached for writes. */
export function accountsParts(o: AccountsOptions): { tx: Part<AccountsTx>; read: ReadPart<AccountsRead> } {
  void o;
  return {
    tx: () => notBuilt(),
    read: () => notBuilt(),
  };
}

function notBuilt(): never {
  throw new Error("accounts: not built yet (issue 8 step S3)");
}

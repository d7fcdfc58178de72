/**
 * What other features may read of exchange (docs/REDESIGN.md §1.1: another feature only through api.ts): counts
 * over a read snapshot for the admin lookup (features/admin), never an instance to be constructed with.
 */
import type { AccountId, Sql } from "../../../storage/store.js";
import { exchangeRepo } from "./repo.js";

/** One-time codes (what a QR code carries): features/groups makes its group codes with the same alphabet and form. */
export { newCode, normalizeCode } from "./code.js";

export interface ExchangeCounts {
  bindings: number;
  blocks: number;
  /** Unexpired requests to the account / from it. */
  pendingTo: number;
  pendingFrom: number;
}

export async function exchangeCounts(read: Sql, me: AccountId, now: number): Promise<ExchangeCounts> {
  const ex = exchangeRepo(read);
  return {
    bindings: (await ex.bindingsOf(me)).length,
    blocks: (await ex.blockedBy(me)).length,
    pendingTo: (await ex.pendingFor(me, now)).length,
    pendingFrom: (await ex.pendingFrom(me, now)).length,
  };
}

/** True when `owner` blocks `blocked` (features/groups: a user who blocks the inviter is never invited). */
export function blocks(q: Sql, owner: AccountId, blocked: AccountId): Promise<boolean> {
  return exchangeRepo(q).isBlocked(owner, blocked);
}

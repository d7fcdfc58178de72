/**
 * Public types of the audience part (docs/REDESIGN.md §3.4): who sees an owner's card, as the union of
 * registered paths (bindings now, groups later). Implemented by audience/tx.ts (issue 8 step S6).
 */
import type { SharePolicy } from "../../../stanzas/model/policy.js";
import type { AccountId, Params, Seq } from "../../../storage/store.js";

export interface AudiencePath {
  name: string;
  from: string; // FROM clause with aliases
  owner: string; // column expression of the owner end
  holder: string; // column expression of the holder end
  policy: string; // expression: JSON SharePolicy text, NULL = everything
  seq: string; // expression: when this path last changed for the pair (sync)
  where?: string; // extra condition (exemptions), may use the owner/holder expressions
  /**
   * Extra condition for the card fan-out only (issue 10: a group member who chose to pull gets no `card` entries
   * through the path, but still sees the card through it: rendering, sync and tombstones ignore this).
   */
  push?: string;
  /**
   * Tombstones the path keeps in its own, lazy form (issue 10: a deleted group records its members once, not one
   * row per pair): a FROM clause and expressions yielding (holder, owner, seq) rows that pull sync reads as if they
   * were rows of `tombstones` — a pair's tombstone is the newest of the explicit row and these. `where` may use the
   * holder and owner expressions (e.g. "not re-opened since"). `opened` cannot delete them: the path's `where` must
   * drop a row once the pair is connected again after its seq.
   */
  tombstones?: { from: string; holder: string; owner: string; seq: string; where?: string };
}
export interface AudienceRead {
  /** The policies under which holder sees owner's card, one per path; [] = not visible. */
  policies(owner: AccountId, holder: AccountId): Promise<Array<SharePolicy | null>>;
  /**
   * policies() for many owners in one statement (a sync page's): owner → its policies, path order; an owner the
   * holder does not see is absent. At most 500 owners per call.
   */
  policiesOf(
    owners: readonly AccountId[],
    holder: AccountId,
  ): Promise<Map<AccountId, Array<SharePolicy | null>>>;
  /** Owners the holder sees whose card or path changed after `since`, seq-ordered, for sync pages. */
  changedFor(
    holder: AccountId,
    since: Seq,
    limit: number,
  ): Promise<Array<{ owner: AccountId; changed: Seq }>>;
  holders(owner: AccountId): Promise<AccountId[]>;
  /**
   * One pull-sync page (§2.5): visible owners whose card, path or view changed after `since` and owners who left
   * sight (tombstones), seq-ordered; a page never ends inside a seq. Added for features/cards/sync.ts (S9).
   */
  syncPage(holder: AccountId, since: Seq, limit: number): Promise<SyncPage>;
}
/** One sync change: an owner whose card or view changed at `seq`, or who left the holder's sight (`removed`). */
export interface SyncChange {
  owner: AccountId;
  seq: Seq;
  removed: boolean;
}
export interface SyncPage {
  changes: SyncChange[];
  /** More changes follow; then `token` is the seq of the last included change, else the store's newest seq. */
  more: boolean;
  token: Seq;
}
export interface AudienceTx extends AudienceRead {
  opened(owner: AccountId, holders: readonly AccountId[]): Promise<void>;
  /** Pairs as a list or a SELECT (owner, holder); returns the pairs that lost sight (tombstoned). */
  closed(
    pairs: readonly [AccountId, AccountId][] | { sql: string; params: Params },
  ): Promise<Array<[AccountId, AccountId]>>;
  /**
   * `closed` for pairs given as a SELECT (owner, holder) of any size, in a fixed number of statements (issue 10:
   * a group member leaving, a group deleted); the pairs that lost sight are not returned. Returns the pair count.
   */
  closedSet(pairs: { sql: string; params: Params }): Promise<number>;
  /**
   * Every pair of the accounts a SELECT (`account`) names lost a path, and the feature recorded it in its path's
   * lazy `tombstones` (issue 10: a deleted group): no tombstone row is written here. Pending `card` entries between
   * them that no path shows any more are retracted, and a pair another path still shows gets a `card` refresh (the
   * view may have narrowed), in a fixed number of statements whose rows grow with the entries and the pairs still
   * connected, never with members². Returns the refreshes appended.
   */
  closedAmong(accounts: { sql: string; params: Params }): Promise<number>;
}

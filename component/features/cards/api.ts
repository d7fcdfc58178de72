/**
 * What other features may read of cards (docs/REDESIGN.md §1.1: another feature only through api.ts): plain
 * functions over a read snapshot or a unit of work's tx, never an instance to be constructed with.
 */
import type { AccountId, Sql } from "../../../storage/store.js";
import { cardsRepo, VERSIONS_CHUNK, type StoredCard } from "./repo.js";

export type { StoredCard } from "./repo.js";

/** The stored card of `owner`, unfiltered (a feature rendering a view applies the audience's policies). */
export function getCard(read: Sql, owner: AccountId): Promise<StoredCard | undefined> {
  return cardsRepo(read).get(owner);
}

/** The version and hash of `owner`'s card, without parsing it (contacts list, addressbook links). */
export function cardVersion(
  read: Sql,
  owner: AccountId,
): Promise<{ version: number; hash: string } | undefined> {
  return cardsRepo(read).version(owner);
}

/** Card versions of many owners (an owner without a card is absent): one statement per 500 owners. */
export async function cardVersions(read: Sql, owners: readonly AccountId[]): Promise<Map<AccountId, number>> {
  const out = new Map<AccountId, number>();
  const repo = cardsRepo(read);
  for (let i = 0; i < owners.length; i += VERSIONS_CHUNK) {
    for (const [k, v] of await repo.versions(owners.slice(i, i + VERSIONS_CHUNK))) out.set(k, v);
  }
  return out;
}

/**
 * Parsing, checking and rendering a card in any wire format (issue 9: an address-book entry is a card and is
 * accepted and written exactly as a card is, with the same limits and messages).
 */
export { checkRenderings, parseFormat, parseSubmitted } from "./service.js";
export { FORMATS, cardContent, cardFor, type Format } from "./render.js";

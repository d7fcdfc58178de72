/**
 * The address book's rules (docs/PROTOCOL.md §20, docs/DECISIONS.md issue 9). Every write is one unit of work on
 * the owner's own book: the entry row, its `book-entry` stream entry on the owner's lane (so the owner's other
 * resources and devices receive the change) and the seq that orders it for sync commit together; a refused request
 * throws inside it and writes nothing. Cards are parsed and measured by the caller, outside any unit of work.
 *
 * Optimistic concurrency: an update names the `version` it edits; any other current version is `conflict`. A
 * removal may name one (then the same rule) or not (unconditional).
 */
import { randomBytes } from "node:crypto";
import { StanzaError, badRequest, conflict, notFound } from "../../../stanzas/errors.js";
import { cardHash, type Card, type CardLimits, type FieldName } from "../../../stanzas/model/card.js";
import { unionView } from "../../../stanzas/model/policy.js";
import type { AccountId, Seq, Sql } from "../../../storage/store.js";
import type { BareJid } from "../../runtime/accounts/api.js";
import type { Logger } from "../../runtime/log.js";
import type { Reader, UnitOfWork, Uow } from "../../runtime/uow.js";
import { checkRenderings, getCard } from "../cards/api.js";
import { editedFields, follow } from "./merge.js";
import { bookRepo, storedBytes, type EntryRow } from "./repo.js";
import { requestRepo } from "./request-repo.js";

/** The stream kind of an entry change on the owner's lane (render.ts). */
export const KIND_ENTRY = "book-entry";
/** The stream kind telling the owner's resources to sync: many entries changed at once (an import). */
export const KIND_CHANGED = "book-changed";

export interface BookLimits {
  maxEntries: number;
  maxBytes: number;
}

export interface BookDeps {
  uow: Uow;
  read: Reader;
  card: CardLimits;
  book: BookLimits;
  log?: Logger;
}

const ID = /^[0-9a-f]{32}$/;

/** A new entry id: 128 random bits as 32 lowercase hex digits (unguessable; collation-safe ordering). */
export const newEntryId = (): string => randomBytes(16).toString("hex");

/** The entry's stable address (PROTOCOL §20.1). */
export const entryUri = (domain: string, id: string): string => `xmpp:${domain}?cardlink;entry=${id}`;

export function parseEntryId(v: string | undefined): string {
  if (v === undefined) throw badRequest("'id' is required");
  if (!ID.test(v)) throw badRequest("'id' must be an entry id (32 lowercase hex digits)");
  return v;
}

export interface EntryWritten {
  row: EntryRow;
  changed: boolean;
}

export const missing = (id: string): StanzaError => notFound(`your address book has no entry ${id}`);
const notHeld = (jid: string): StanzaError => notFound(`you hold no card of ${jid}`);

/** The card `linked` as `me` sees it now (every path's policy), or undefined when `me` holds none. */
export async function linkedView(
  u: Pick<UnitOfWork, "tx" | "audience">,
  linked: AccountId,
  me: AccountId,
): Promise<Card | undefined> {
  const policies = await u.audience.policies(linked, me);
  if (policies.length === 0) return undefined;
  const stored = await getCard(u.tx, linked);
  return stored ? unionView(stored.card, policies) : undefined;
}

/** Refuses a write that would take the book over book.maxEntries or book.maxBytes. */
export async function checkCaps(
  q: Sql,
  me: AccountId,
  limits: BookLimits,
  add: number,
  addBytes: number,
): Promise<void> {
  const use = await bookRepo(q).usage(me);
  if (add > 0 && use.entries + add > limits.maxEntries) {
    throw new StanzaError(
      "resource-constraint",
      `your address book holds ${use.entries} entries; adding ${add} would pass the limit of ${limits.maxEntries}`,
      { type: "cancel" },
    );
  }
  if (addBytes > 0 && use.bytes + addBytes > limits.maxBytes) {
    throw new StanzaError(
      "resource-constraint",
      `your address book holds ${use.bytes} bytes; this would pass the limit of ${limits.maxBytes}`,
      { type: "cancel" },
    );
  }
}

/** Writes `next` over `row` at this unit of work's seq and tells the owner's lane. */
export async function rewrite(
  u: UnitOfWork,
  row: EntryRow,
  next: { card: Card | null; linked?: AccountId | undefined; edited: readonly FieldName[] },
): Promise<EntryRow> {
  const seq = await u.seq();
  const hash = next.card === null ? null : cardHash(next.card);
  const w = {
    id: row.id,
    owner: row.owner,
    version: row.version + 1,
    hash,
    card: next.card,
    linked: next.card === null ? undefined : next.linked,
    edited: next.card === null ? [] : next.edited,
    seq,
  };
  await bookRepo(u.tx).update(w, u.now);
  await u.queue.append(KIND_ENTRY, [row.owner], { subject: row.id });
  return {
    ...row,
    version: w.version,
    ...(hash === null ? { hash: undefined, card: undefined } : { hash, card: next.card as Card }),
    bytes: next.card === null ? 0 : storedBytes(next.card),
    linkedOwner: w.linked,
    edited: [...w.edited],
    seq,
    updatedAt: u.now,
  };
}

/** The live entry `id` of `me`, or item-not-found (another user's entry is not found either). */
export async function ownEntry(q: Sql, me: AccountId, id: string): Promise<EntryRow & { card: Card }> {
  const row = await bookRepo(q).get(id);
  if (!row || row.owner !== me || !row.card) throw missing(id);
  return row as EntryRow & { card: Card };
}

function checkVersion(row: EntryRow, version: number): void {
  if (row.version !== version) {
    throw conflict(
      `entry ${row.id} is at version ${row.version}, not ${version}; read it again and redo the change`,
    );
  }
}

export class BookService {
  constructor(private readonly d: BookDeps) {}

  /** A new entry from `card`, or from the card of `link` (then it follows that card, §20.8), or both. */
  create(user: BareJid, o: { card?: Card; link?: BareJid }): Promise<EntryWritten> {
    if (!o.card && !o.link) throw badRequest("an entry needs a card or a 'link'");
    return this.d.uow("book.create", async (u) => {
      const me = await u.accounts.ensure(user, { seen: true });
      await u.tx.lockAccount(me);
      let linked: AccountId | undefined;
      let view: Card | undefined;
      if (o.link) {
        linked = await u.accounts.resolve(o.link);
        view = linked === undefined ? undefined : await linkedView(u, linked, me);
        if (!view) throw notHeld(o.link);
      }
      const card = (o.card ?? view) as Card;
      await checkCaps(u.tx, me, this.d.book, 1, storedBytes(card));
      const seq = await u.seq();
      const id = newEntryId();
      const edited = view ? editedFields(card, view) : [];
      const hash = cardHash(card);
      await bookRepo(u.tx).insert({ id, owner: me, version: 1, hash, card, linked, edited, seq }, u.now);
      await u.queue.append(KIND_ENTRY, [me], { subject: id });
      const row: EntryRow = {
        id,
        owner: me,
        version: 1,
        hash,
        card,
        bytes: storedBytes(card),
        ...(linked === undefined ? {} : { linkedOwner: linked }),
        edited,
        seq,
        createdAt: u.now,
        updatedAt: u.now,
      };
      return { row, changed: true };
    });
  }

  /**
   * Replaces entry `id` (at `version`) with `card`, and/or links it (`link` a JID) or unlinks it (`link` null).
   * Linking without a card takes the card's values for every field; with a card, the fields that differ from
   * the linked card are the owner's (merge.ts). An unchanged entry takes no seq and notifies nobody.
   */
  update(
    user: BareJid,
    id: string,
    version: number,
    o: { card?: Card; link?: BareJid | null },
  ): Promise<EntryWritten> {
    if (!o.card && o.link === undefined) throw badRequest("nothing to change: send a card, 'link' or both");
    return this.d.uow("book.update", async (u) => {
      const me = await u.accounts.resolve(user);
      if (me === undefined) throw missing(id);
      await u.tx.lockAccount(me);
      const row = await ownEntry(u.tx, me, id);
      checkVersion(row, version);
      let linked = row.linkedOwner;
      if (o.link === null) linked = undefined;
      else if (o.link !== undefined) {
        linked = await u.accounts.resolve(o.link);
        if (linked === undefined) throw notHeld(o.link);
      }
      const view = linked === undefined ? undefined : await linkedView(u, linked, me);
      if (linked !== undefined && !view) {
        if (o.link) throw notHeld(o.link);
        linked = undefined; // the card left sight without an unlink (cannot happen: binding.removed unlinks)
      }
      const newlyLinked = o.link !== undefined && o.link !== null && linked !== row.linkedOwner;
      const card = o.card ?? (newlyLinked && view ? view : row.card);
      const edited = view ? editedFields(card, view) : [];
      const same =
        cardHash(card) === row.hash &&
        linked === row.linkedOwner &&
        JSON.stringify(edited) === JSON.stringify(row.edited);
      if (same) return { row, changed: false };
      const bytes = storedBytes(card) - row.bytes;
      await checkCaps(u.tx, me, this.d.book, 0, bytes);
      return { row: await rewrite(u, row, { card, linked, edited }), changed: true };
    });
  }

  /** Deletes entry `id` (at `version` when given): a tombstone for sync, a `<removed/>` for the owner's lanes. */
  remove(user: BareJid, id: string, version?: number): Promise<void> {
    return this.d.uow("book.remove", async (u) => {
      const me = await u.accounts.resolve(user);
      if (me === undefined) throw missing(id);
      await u.tx.lockAccount(me);
      const row = await ownEntry(u.tx, me, id);
      if (version !== undefined) checkVersion(row, version);
      // Its open update requests are withdrawn (the owner did it: no result notice; B's notice becomes moot).
      const requests = requestRepo(u.tx);
      for (const r of await requests.openForEntry(id)) await requests.close(r.id, "withdrawn", u.now);
      await rewrite(u, row, { card: null, edited: [] });
      await bookRepo(u.tx).pruneTombstones(me, this.d.book.maxEntries);
    });
  }

  /**
   * Adds every card of an import as a new entry, in one unit of work at one seq. The caller parsed the file
   * (cards it could not read are reported, not stored); the entry cap counts every card added: over it, the
   * whole import is refused and nothing is written.
   */
  importCards(user: BareJid, cards: readonly Card[]): Promise<{ ids: string[]; seq?: Seq }> {
    if (cards.length === 0) return Promise.resolve({ ids: [] });
    return this.d.uow("book.import", async (u) => {
      const me = await u.accounts.ensure(user, { seen: true });
      await u.tx.lockAccount(me);
      const bytes = cards.reduce((n, c) => n + storedBytes(c), 0);
      await checkCaps(u.tx, me, this.d.book, cards.length, bytes);
      const seq = await u.seq();
      const repo = bookRepo(u.tx);
      const ids: string[] = [];
      for (const card of cards) {
        const id = newEntryId();
        await repo.insert({ id, owner: me, version: 1, hash: cardHash(card), card, edited: [], seq }, u.now);
        ids.push(id);
      }
      // One `book-changed` for the whole import instead of a `book-entry` per card: the owner's resources sync
      // (§20.9). 10,000 rendered entries pushed to every resource took 34 s; one sync pulls them in 50 pages.
      await u.queue.append(KIND_CHANGED, [me], { subject: "import" });
      return { ids, seq };
    });
  }

  /** The owner's live entry `id`. Reads only. */
  get(user: BareJid, id: string): Promise<{ row: EntryRow & { card: Card }; linked?: BareJid }> {
    return this.d.read("book.get", async (r) => {
      const me = await r.accounts.resolve(user);
      if (me === undefined) throw missing(id);
      const row = await ownEntry(r.read, me, id);
      if (row.linkedOwner === undefined) return { row };
      return { row, linked: await r.accounts.jidOf(row.linkedOwner) };
    });
  }
}

// ------------------------------------------------------------------------------------------------------------
// Linked entries: in-transaction handlers of other features' events (index.ts registers them).
// ------------------------------------------------------------------------------------------------------------

/** The entry keeps its content and stops following (its owner no longer holds the card, or it cannot follow). */
export async function unlink(u: UnitOfWork, row: EntryRow): Promise<void> {
  if (!row.card || row.linkedOwner === undefined) return;
  await rewrite(u, row, { card: row.card, linked: undefined, edited: [] });
}

/**
 * `card.updated` (in the card's unit of work): every entry linked to that card takes the new values of the fields
 * its owner did not edit, through the view that owner has of the card now. An entry whose merged card breaks the
 * card limits or its book's byte cap stops following (unlinked, content kept) rather than failing the card owner's
 * update; an entry whose owner no longer holds the card is unlinked.
 */
export async function followCard(
  u: UnitOfWork,
  owner: AccountId,
  d: { card: CardLimits; book: BookLimits; log?: Logger },
): Promise<void> {
  const rows = await bookRepo(u.tx).linkedTo(owner);
  for (const row of rows) {
    const current = row.card as Card;
    const view = await linkedView(u, owner, row.owner);
    if (!view) {
      await unlink(u, row);
      continue;
    }
    const next = follow(current, view, row.edited);
    const hash = cardHash(next);
    if (hash === row.hash) continue;
    let fits = true;
    try {
      checkRenderings(next, d.card);
      const use = await bookRepo(u.tx).usage(row.owner);
      if (use.bytes - row.bytes + storedBytes(next) > d.book.maxBytes) fits = false;
    } catch (e) {
      if (!(e instanceof StanzaError)) throw e;
      fits = false;
    }
    if (!fits) {
      d.log?.warn({ event: "book-follow-stopped", entry: row.id }, "linked entry over its limits: unlinked");
      await unlink(u, row);
      continue;
    }
    await rewrite(u, row, { card: next, linked: owner, edited: row.edited });
  }
}

/** `binding.removed`: each side's entries linked to the other are unlinked unless another path still shows the card. */
export async function unlinkUnheld(u: UnitOfWork, a: AccountId, b: AccountId): Promise<void> {
  for (const [me, other] of [
    [a, b],
    [b, a],
  ] as const) {
    const rows = await bookRepo(u.tx).linkedBetween(me, other);
    if (rows.length === 0) continue;
    if ((await u.audience.policies(other, me)).length > 0) continue;
    for (const row of rows) await unlink(u, row);
  }
}

/**
 * `identifier.changed` for a JID (issue 12's move): every entry in another book that follows the moved account's
 * card is rewritten unchanged but for a new version and seq, so its owner's sync and `book-entry` notice carry the
 * entry with its `link` rendered as the new JID. The card itself is keyed by account: nothing else moves.
 */
export async function relinkMoved(u: UnitOfWork, account: AccountId): Promise<void> {
  for (const row of await bookRepo(u.tx).linkedTo(account)) {
    if (!row.card) continue;
    await rewrite(u, row, { card: row.card, linked: account, edited: row.edited });
  }
}

/** `account.deleting`: the book goes; entries in other books that followed the account's card are unlinked. */
export async function eraseBook(u: UnitOfWork, account: AccountId): Promise<void> {
  const repo = bookRepo(u.tx);
  await repo.erase(account);
  for (const row of await repo.linkedTo(account)) await unlink(u, row);
}

/**
 * Update requests (issue 9, second part; docs/PROTOCOL.md §20.11–§20.17, docs/DECISIONS.md): A asks B to complete
 * or correct A's own entry for B. Each operation is ONE unit of work, so a refused request or answer throws inside
 * it and writes nothing — no request row, no notice, no entry change.
 *
 * - A request names an entry of A's own book; its target is the `jid` A gives, else the card the entry follows,
 *   else the entry's first `xmpp:` IMPP address. A JID that never used cardlink gets a placeholder account (the
 *   same rows and the same answer whether B exists or not); the notice waits in its lane until B appears.
 * - One open request per (A, B) (a partial unique index backs the check); caps on open requests sent and received;
 *   an hourly limit counted from the stored rows (so it holds across restarts and processes).
 * - B blocks A (the exchange blocklist): the request is stored hidden and never shown to B — A sees an open request
 *   that expires unanswered, exactly as one B ignores (as group invitations do). Blocking later hides the open ones.
 * - B's answer writes only A's entry (through the book's own rewrite: caps, version, `book-entry` to A's lanes) and
 *   is applied like an owner's edit: on a linked entry, fields that now differ from the followed card become the
 *   owner's (`edited`), fields equal to it keep following. The result notice goes to A only.
 */
import { randomUUID } from "node:crypto";
import { StanzaError, badRequest, conflict, notFound, quote } from "../../../stanzas/errors.js";
import { CardError, cardHash, type Card, type CardLimits } from "../../../stanzas/model/card.js";
import { unionView } from "../../../stanzas/model/policy.js";
import {
  PICK_FORM_TYPE,
  UPDATE_FIELDS,
  UPDATE_FORM_TYPE,
  applyPicked,
  applyUpdate,
  cardJid,
  pickFields,
  pickForm,
  pickItems,
  updateForm,
  updateValues,
  validateSubmission,
  type FieldDef,
  type RequestForm,
  type RequestStatus,
} from "../../../stanzas/update-request.js";
import type { Element } from "../../../stanzas/xml.js";
import type { AccountId } from "../../../storage/store.js";
import type { BareJid } from "../../runtime/accounts/api.js";
import { userJid } from "../../runtime/jid.js";
import type { ReadContext, Reader, UnitOfWork, Uow } from "../../runtime/uow.js";
import { getCard } from "../cards/api.js";
import { blocks } from "../exchange/api.js";
import { editedFields } from "./merge.js";
import { bookRepo, storedBytes, type EntryRow } from "./repo.js";
import { requestRepo, type RequestRow } from "./request-repo.js";
import { checkCaps, entryUri, linkedView, ownEntry, rewrite, type BookLimits } from "./service.js";

/** The notice to B (one per request: `keep`) and the result to A (one per closed request: `keep`). */
export const KIND_REQUEST = "update-request";
export const KIND_RESULT = "update-result";

/** Closed requests stay this long: the hourly limit counts them, and a late answer is told what happened. */
export const REQUEST_KEEP_CLOSED_MS = 3_600_000;
const HOUR_MS = 3_600_000;

export interface RequestLimits {
  requestTtlSeconds: number;
  requestsPerHour: number;
  maxOpenRequestsSent: number;
  maxOpenRequestsReceived: number;
}

export interface RequestDeps {
  uow: Uow;
  read: Reader;
  domain: string;
  servedHosts: readonly string[];
  card: CardLimits;
  book: BookLimits & RequestLimits;
}

export interface RequestMade {
  id: string;
  entry: string;
  to: BareJid;
  form: RequestForm;
  expiresAt: number;
}

/** A request as its target sees it (notice, list, ad-hoc command). */
export interface IncomingRequest {
  id: string;
  from: BareJid;
  name?: string;
  form: RequestForm;
  expiresAt: number;
  uri?: string;
  /** The pre-filled update form (form `form`). */
  formElement?: Element;
}

export interface OutgoingRequest {
  id: string;
  entry: string;
  to: BareJid;
  form: RequestForm;
  expiresAt: number;
}

/** What B sends: a submitted form (forms `form` and `pick`; `address` through the ad-hoc command) or a card. */
export type Answer = { form: Element } | { card: Card; version?: number };

/** The body of an `update-result` payload: ids only, never JIDs (§2.3.2). */
export interface ResultBody {
  id: string;
  entry: string;
  to: number;
  status: RequestStatus;
}

const noSuch = (id: string): StanzaError => notFound(`no update request '${quote(id)}' for you`);
const gone = (id: string): StanzaError => new StanzaError("gone", `update request ${id} expired`);

/** A's display name as B may see it: the `fn` of A's card through B's view of it, when B holds A's card. */
export async function nameFor(
  r: Pick<ReadContext, "audience"> & { q: Parameters<typeof getCard>[0] },
  owner: AccountId,
  viewer: AccountId,
): Promise<string | undefined> {
  const policies = await r.audience.policies(owner, viewer);
  if (policies.length === 0) return undefined;
  const stored = await getCard(r.q, owner);
  if (!stored) return undefined;
  const fn = unionView(stored.card, policies).fn;
  return fn === "" ? undefined : fn;
}

/**
 * The request as B sees it now, or undefined when it is not B's to see (closed, hidden, expired, or its entry
 * gone). Shared by the notice's renderer, the incoming list and the ad-hoc command.
 */
export async function incomingView(
  r: ReadContext,
  domain: string,
  req: RequestRow,
  me: AccountId,
  now: number,
): Promise<IncomingRequest | undefined> {
  if (req.target !== me || req.hidden || req.state !== "open" || req.expiresAt <= now) return undefined;
  const entry = await bookRepo(r.read).get(req.entry);
  if (!entry?.card || entry.owner !== req.owner) return undefined;
  const from = await r.accounts.jidOf(req.owner);
  const name = await nameFor({ audience: r.audience, q: r.read }, req.owner, me);
  const base = { id: req.id, from, ...(name ? { name } : {}), form: req.form, expiresAt: req.expiresAt };
  if (req.form === "address") return { ...base, uri: entryUri(domain, req.entry) };
  if (req.form === "pick") return base;
  const formEl = updateForm(updateValues(entry.card, await r.accounts.jidOf(me)), {
    title: `Your details in ${name ?? from}'s address book`,
    instructions: `${from} asks you to check and complete what they have for you. Submit to send it, or decline.`,
  });
  return { ...base, formElement: formEl };
}

export class RequestService {
  constructor(private readonly d: RequestDeps) {}

  private targetJid(input: string): BareJid {
    const jid = userJid(input, "jid");
    const host = jid.slice(jid.indexOf("@") + 1);
    if (!this.d.servedHosts.includes(host))
      throw new StanzaError(
        "not-acceptable",
        `cardlink sends update requests to users of ${this.d.servedHosts.join(", ")} only`,
        { type: "modify" },
      );
    return jid;
  }

  /** A asks B (the entry's person, or `jidInput`) to complete entry `entry` of A's book. */
  async create(
    user: BareJid,
    entry: string,
    jidInput: string | undefined,
    form: RequestForm,
  ): Promise<RequestMade> {
    const explicit = jidInput === undefined ? undefined : this.targetJid(jidInput);
    const b = this.d.book;
    return this.d.uow("book.request", async (u) => {
      const me = await u.accounts.ensure(user, { seen: true });
      const row = await ownEntry(u.tx, me, entry);
      let to = explicit;
      if (to === undefined && row.linkedOwner !== undefined) to = await u.accounts.jidOf(row.linkedOwner);
      if (to === undefined) {
        const named = cardJid(row.card);
        if (named === undefined)
          throw badRequest(`entry ${entry} names no XMPP address: give the 'jid' to ask`);
        to = this.targetJid(named);
      }
      if (to === user) throw badRequest("you cannot ask yourself to update an entry");
      // A placeholder for an unknown JID: the same rows as for a known one (§2.2).
      const peer = await u.accounts.ensure(to);
      // Both accounts locked, in id order (two users asking each other at once cannot deadlock): the counts
      // below are exact per sender and per target on PostgreSQL too (SQLite serializes every writer anyway).
      for (const id of [me, peer].sort((x, y) => x - y)) await u.tx.lockAccount(id);
      const repo = requestRepo(u.tx);
      const existing = await repo.openBetween(me, peer);
      if (existing && existing.expiresAt > u.now)
        throw conflict(
          `you already asked ${to} (update request ${existing.id}); wait for its answer or expiry`,
        );
      if (existing) await closeRequest(u, existing, "expired"); // a leftover the sweep has not reached yet
      // The hourly brake first: a sender at it is told to wait whatever else would refuse the request.
      if ((await repo.countSince(me, u.now - HOUR_MS)) >= b.requestsPerHour) {
        const oldest = (await repo.oldestSince(me, u.now - HOUR_MS)) ?? u.now;
        const mins = Math.max(1, Math.ceil((oldest + HOUR_MS - u.now) / 60_000));
        throw new StanzaError(
          "policy-violation",
          `at most ${b.requestsPerHour} update requests per hour; try again in ${mins} min`,
          { type: "wait" },
        );
      }
      if ((await repo.countOpenFrom(me)) >= b.maxOpenRequestsSent)
        throw new StanzaError(
          "resource-constraint",
          `you have ${b.maxOpenRequestsSent} open update requests; wait for answers`,
          { type: "wait" },
        );
      if ((await repo.countOpenTo(peer)) >= b.maxOpenRequestsReceived)
        throw new StanzaError(
          "resource-constraint",
          `${to} cannot take more update requests now; try later`,
          {
            type: "wait",
          },
        );
      const req = {
        id: randomUUID(),
        owner: me,
        target: peer,
        entry,
        form,
        hidden: await blocks(u.tx, peer, me),
        createdAt: u.now,
        expiresAt: u.now + b.requestTtlSeconds * 1000,
      };
      if (!(await repo.insert(req))) throw conflict(`you already asked ${to}; wait for its answer or expiry`);
      if (!req.hidden) await u.queue.append(KIND_REQUEST, [peer], { subject: req.id });
      return { id: req.id, entry, to, form, expiresAt: req.expiresAt };
    });
  }

  /** B's open requests (oldest first), as B sees them. */
  incoming(user: BareJid): Promise<IncomingRequest[]> {
    return this.d.read("book.requests-in", async (r) => {
      const me = await r.accounts.resolve(user);
      if (me === undefined) return [];
      const out: IncomingRequest[] = [];
      for (const req of await requestRepo(r.read).incoming(me, r.read.now)) {
        const v = await incomingView(r, this.d.domain, req, me, r.read.now);
        if (v) out.push(v);
      }
      return out;
    });
  }

  /** A's open requests (oldest first; hidden ones included: A cannot tell them apart). */
  outgoing(user: BareJid): Promise<OutgoingRequest[]> {
    return this.d.read("book.requests-out", async (r) => {
      const me = await r.accounts.resolve(user);
      if (me === undefined) return [];
      const rows = await requestRepo(r.read).outgoing(me);
      const jids = await r.accounts.jidsOf(rows.map((q) => q.target));
      return rows.map((q) => ({
        id: q.id,
        entry: q.entry,
        to: jids.get(q.target) ?? "",
        form: q.form,
        expiresAt: q.expiresAt,
      }));
    });
  }

  /** B's open request `id` (read side): item-not-found for anyone else's, conflict/gone when closed/expired. */
  private async mineOpen(
    r: Pick<ReadContext, "accounts"> & { q: Parameters<typeof requestRepo>[0]; now: number },
    user: BareJid,
    id: string,
  ): Promise<{ me: AccountId; req: RequestRow }> {
    const me = await r.accounts.resolve(user);
    const req = me === undefined ? undefined : await requestRepo(r.q).get(id);
    if (!req || me === undefined || req.target !== me || req.hidden) throw noSuch(id);
    if (req.state === "expired" || (req.state === "open" && req.expiresAt <= r.now)) throw gone(id);
    if (req.state !== "open") throw conflict(`update request ${id} was already ${req.state}`);
    return { me, req };
  }

  /** The request as B sees it (the ad-hoc command's answer step). */
  view(user: BareJid, id: string): Promise<IncomingRequest & { entryCard: Card }> {
    return this.d.read("book.request-view", async (r) => {
      const { me, req } = await this.mineOpen({ accounts: r.accounts, q: r.read, now: r.read.now }, user, id);
      const v = await incomingView(r, this.d.domain, req, me, r.read.now);
      const entry = await bookRepo(r.read).get(req.entry);
      if (!v || !entry?.card) throw noSuch(id);
      return { ...v, entryCard: entry.card };
    });
  }

  /** The pick form over B's own card (form `pick`). */
  pickForm(user: BareJid, id: string): Promise<Element> {
    return this.d.read("book.request-pick", async (r) => {
      const { me, req } = await this.mineOpen({ accounts: r.accounts, q: r.read, now: r.read.now }, user, id);
      if (req.form !== "pick")
        throw badRequest(`update request ${id} asks for a '${req.form}' answer, not a pick`);
      const mine = await getCard(r.read, me);
      if (!mine) throw notFound("you have no card to pick from: set your card first");
      const from = await r.accounts.jidOf(req.owner);
      return pickForm(pickItems(mine.card), {
        title: `Send your details to ${from}`,
        instructions: `Pick what ${from} may put in their address book entry for you.`,
      });
    });
  }

  /** The entry at the request's address (form `address`): B reads the one entry the request is about. */
  requestedEntry(user: BareJid, entry: string): Promise<{ req: RequestRow; row: EntryRow & { card: Card } }> {
    return this.d.read("book.request-entry", async (r) => {
      const me = await r.accounts.resolve(user);
      const rows = me === undefined ? [] : await requestRepo(r.read).openForEntry(entry);
      const req = rows.find(
        (q) => q.target === me && !q.hidden && q.form === "address" && q.expiresAt > r.read.now,
      );
      const row = req ? await bookRepo(r.read).get(entry) : undefined;
      // One answer for every other case: B learns nothing about entries it was not asked about.
      if (!req || !row?.card) throw notFound(`no update request of yours is about entry ${entry}`);
      return { req, row: row as EntryRow & { card: Card } };
    });
  }

  /** B's answer: writes A's entry and tells A. Answers the entry's version after it and whether it changed. */
  answer(user: BareJid, id: string, a: Answer): Promise<{ changed: boolean; version: number }> {
    return this.d.uow("book.request-answer", async (u) => {
      const { me, req } = await this.mineOpen({ accounts: u.accounts, q: u.tx, now: u.now }, user, id);
      const entry = await bookRepo(u.tx).get(req.entry);
      if (!entry?.card || entry.owner !== req.owner) throw noSuch(id);
      const next = await this.answeredCard(u, me, req, entry as EntryRow & { card: Card }, a);
      let changed = false;
      let version = entry.version;
      if (cardHash(next) !== entry.hash) {
        const linked = entry.linkedOwner;
        const view = linked === undefined ? undefined : await linkedView(u, linked, req.owner);
        const edited = view ? editedFields(next, view) : [];
        try {
          await checkCaps(u.tx, req.owner, this.d.book, 0, storedBytes(next) - entry.bytes);
        } catch (e) {
          // The cap's own text tells A's usage; B is told only that it does not fit.
          if (!(e instanceof StanzaError)) throw e;
          const owner = await u.accounts.jidOf(req.owner);
          throw new StanzaError(
            "resource-constraint",
            `${owner}'s address book has no room for this answer`,
            {
              type: "cancel",
            },
          );
        }
        const w = await rewrite(u, entry, {
          card: next,
          linked: view ? linked : undefined,
          edited,
        });
        changed = true;
        version = w.version;
      }
      await closeRequest(u, req, "answered");
      return { changed, version };
    });
  }

  private async answeredCard(
    u: UnitOfWork,
    me: AccountId,
    req: RequestRow,
    entry: EntryRow & { card: Card },
    a: Answer,
  ): Promise<Card> {
    if ("card" in a) {
      if (req.form !== "address")
        throw badRequest(`update request ${req.id} asks for a submitted form, not a card`);
      if (a.version !== undefined && a.version !== entry.version)
        throw conflict(
          `the entry is at version ${entry.version}, not ${a.version}; read it again and redo the change`,
        );
      return a.card;
    }
    if (req.form === "pick") {
      const mine = await getCard(u.tx, me);
      if (!mine) throw notFound("you have no card to pick from: set your card first");
      const values = validateForm(a.form, PICK_FORM_TYPE, pickFields(pickItems(mine.card)));
      return applyPicked(entry.card, mine.card, values.get("items") ?? [], this.d.card);
    }
    const values = validateForm(a.form, UPDATE_FORM_TYPE, UPDATE_FIELDS);
    return withCardErrors(() => applyUpdate(entry.card, values, this.d.card));
  }

  /** B declines: the request closes; only A is told. */
  decline(user: BareJid, id: string): Promise<void> {
    return this.d.uow("book.request-decline", async (u) => {
      const { req } = await this.mineOpen({ accounts: u.accounts, q: u.tx, now: u.now }, user, id);
      await closeRequest(u, req, "declined");
    });
  }

  /** The sweep: open requests past their expiry close (A told), closed rows older than the keep go. */
  expire(limit = 500): Promise<number> {
    return this.d.uow("book.request-expire", async (u) => {
      const repo = requestRepo(u.tx);
      const rows = await repo.expired(u.now, limit);
      for (const r of rows) await closeRequest(u, r, "expired");
      await repo.prune(u.now - REQUEST_KEEP_CLOSED_MS);
      return rows.length;
    });
  }
}

const validateForm = (x: Element, formType: string, defs: readonly FieldDef[]) =>
  withCardErrors(() => validateSubmission(x, formType, defs));

/** Card validation of an applied answer is the answerer's mistake: bad-request with the field named. */
function withCardErrors<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof CardError) throw badRequest(e.message);
    throw e;
  }
}

/** Closes `req` as `state`; A gets a result notice unless A withdrew it (A removed the entry). */
export async function closeRequest(
  u: UnitOfWork,
  req: RequestRow,
  state: RequestStatus | "withdrawn",
): Promise<void> {
  if (!(await requestRepo(u.tx).close(req.id, state, u.now))) return;
  if (state === "withdrawn") return;
  const body: ResultBody = { id: req.id, entry: req.entry, to: req.target, status: state };
  const payload = await u.queue.payload(KIND_RESULT, { ...body });
  await u.queue.append(KIND_RESULT, [req.owner], { subject: req.id, payload });
}

/** `exchange.blocked`: B blocks A — A's open requests to B are hidden and their undelivered notices retracted. */
export async function hideBlocked(u: UnitOfWork, owner: AccountId, blocked: AccountId): Promise<void> {
  const req = await requestRepo(u.tx).openBetween(blocked, owner);
  if (!req || req.hidden) return;
  await requestRepo(u.tx).hide(req.id);
  await u.queue.retract(KIND_REQUEST, req.id, [owner]);
}

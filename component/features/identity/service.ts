/**
 * The identity rules (issue 12; docs/PROTOCOL.md §23): identifiers and their verification, moves of an identifier
 * (XEP-0283 0.2 semantics: the old account vouches for the new one), and the services registered under an
 * identifier with the update request that follows a change. Every operation is one unit of work; a refused
 * request throws inside it and writes nothing — except a wrong code, whose spent attempt must stay: that unit of
 * work commits and the refusal is thrown after it.
 *
 * A move costs O(1) statements plus the fan-out rows: accounts, not JIDs, key every table (docs/REDESIGN.md §2.2),
 * so the card, bindings, group memberships and roles, pending requests and invitations, and the entries in other
 * books that follow the card all move with one UPDATE of the old `identifiers` row and one INSERT of the new one.
 * What must be told is told in the same unit of work: a `moved` notice and a fresh `card` entry to every lane of
 * the account's audience (holders and co-members) and to its own lane, and (addressbook's `identifier.changed`
 * handler) a `book-entry` to each book owner whose entry follows the card.
 */
import { createHash, randomInt, randomUUID } from "node:crypto";
import { StanzaError, badRequest, conflict, notFound, quote } from "../../../stanzas/errors.js";
import {
  normalizeEmail,
  normalizeTel,
  type IdentifierKind,
  type IdentifierView,
  type MoveView,
  type ServiceInput,
  type ServiceView,
} from "../../../stanzas/identity.js";
import type { AccountId } from "../../../storage/store.js";
import type { BareJid } from "../../runtime/accounts/api.js";
import type { Config } from "../../runtime/config.js";
import { userJid } from "../../runtime/jid.js";
import type { Logger } from "../../runtime/log.js";
import type { Reader, UnitOfWork, Uow } from "../../runtime/uow.js";
import { WEBHOOK_CHANNEL, webhookJob } from "../../runtime/webhooks/api.js";
import { KIND_MOVED, KIND_SERVICE, type MovedBody } from "./render.js";
import { identityRepo, type CodeRow, type MoveRow, type ServiceRow } from "./repo.js";
import { VerifierError, type Verifier } from "./verifier.js";

declare module "../../runtime/events.js" {
  interface DomainEvents {
    /** The user confirmed an update request: its selected items wait for their providers. */
    "identity.services-confirmed": { account: AccountId; update: string };
    /** A JID move, at the end of its unit of work (every row moved, every notice appended). */
    "identity.moved": { account: AccountId; from: BareJid; to: BareJid; lanes: number };
  }
}

export type IdentityConfig = Config["identity"];

export interface IdentityOptions {
  uow: Uow;
  read: Reader;
  config: IdentityConfig;
  verifier: Verifier;
  log: Logger;
  /** The webhook connectors configured (webhooks.connectors names): a provider's `connector` must be one. */
  connectors: readonly string[];
}

/** The webhook event a provider receives for an identifier change (PROTOCOL §23.8). */
export const PROVIDER_EVENT = "identity.identifier-changed";

/** An identifier value as the client wrote it → its normalised form for `kind`. */
export function normalizeIdentifier(kind: IdentifierKind, value: string): string {
  if (kind === "tel") return normalizeTel(value);
  if (kind === "email") return normalizeEmail(value);
  return userJid(value, "value");
}

export const codeHash = (account: AccountId, kind: string, value: string, code: string): string =>
  createHash("sha256").update(`${account}|${kind}|${value}|${code}`).digest("hex");

/** Six digits, uniformly drawn. */
const newCode = (): string => String(randomInt(0, 1_000_000)).padStart(6, "0");

const iso = (t: number): string => new Date(t).toISOString();

const resourceLimit = (text: string, type: "cancel" | "wait" = "cancel"): StanzaError =>
  new StanzaError("resource-constraint", text, { type });

/** How a code check ended; the unit of work commits the spent attempt before a refusal is thrown. */
type CodeCheck = { ok: true; row: CodeRow } | { ok: false; error: StanzaError };

/**
 * Checks `code` against the open verification; a wrong code spends an attempt (the last one drops the
 * verification). Runs inside the caller's unit of work, which must commit even when the check fails.
 */
async function checkCode(
  u: UnitOfWork,
  account: AccountId,
  kind: "tel" | "email",
  value: string,
  purpose: "add" | "move",
  code: string,
): Promise<CodeCheck> {
  const repo = identityRepo(u.tx);
  const row = await repo.code(account, kind, value, purpose);
  if (!row || row.expiresAt <= u.now)
    return {
      ok: false,
      error: notFound(`no open verification of ${quote(value)} (it may have expired): ask for a new code`),
    };
  if (row.codeHash !== codeHash(account, kind, value, code)) {
    if (row.attemptsLeft <= 1) {
      await repo.deleteCode(account, kind, value, purpose);
      return {
        ok: false,
        error: new StanzaError("not-authorized", "wrong code and no attempts left: ask for a new code"),
      };
    }
    await repo.spendAttempt(account, kind, value, purpose);
    return {
      ok: false,
      error: new StanzaError("not-authorized", `wrong code; ${row.attemptsLeft - 1} attempts left`),
    };
  }
  return { ok: true, row };
}

export class IdentityService {
  constructor(private readonly o: IdentityOptions) {}

  private get cfg(): IdentityConfig {
    return this.o.config;
  }

  // ------------------------------------------------------------------------------------- identifiers

  /** The account's identifiers (active, held), open verifications and open and recent moves. */
  async list(user: BareJid): Promise<{ identifiers: IdentifierView[]; moves: MoveView[] }> {
    return this.o.read("identity.list", async (r) => {
      const me = await r.accounts.resolve(user);
      if (me === undefined) return { identifiers: [], moves: [] };
      const now = r.read.now;
      const repo = identityRepo(r.read);
      const rows = await r.read.all<{
        kind: string;
        value: string;
        state: string;
        is_primary: number;
        verified_at: number | null;
        held_until: number | null;
      }>(
        `SELECT kind, value, state, is_primary, verified_at, held_until FROM identifiers WHERE account_id = :me
           AND (state = 'active' OR (state = 'held' AND held_until > :now))
         ORDER BY is_primary DESC, kind, value`,
        { me, now },
      );
      const identifiers: IdentifierView[] = rows.map((i) => ({
        kind: i.kind as IdentifierKind,
        value: i.value,
        state: i.state as "active" | "held",
        ...(Number(i.is_primary) === 1 ? { primary: true } : {}),
        ...(i.verified_at === null ? {} : { verifiedAt: Number(i.verified_at) }),
        ...(i.held_until === null || i.state !== "held" ? {} : { heldUntil: Number(i.held_until) }),
      }));
      for (const c of await repo.codesOf(me, now)) {
        if (c.purpose !== "add") continue;
        identifiers.push({
          kind: c.kind,
          value: c.value,
          state: "pending",
          expiresAt: c.expiresAt,
          attemptsLeft: c.attemptsLeft,
        });
      }
      const moves = [...(await repo.openMoves(me, now)), ...(await repo.doneMoves(me))].map(moveView);
      return { identifiers, moves };
    });
  }

  /**
   * Starts the verification of a new phone number or e-mail address: stores the code's hash, then has the
   * connector deliver the code. A connector failure drops the verification again and answers `wait`.
   */
  async add(user: BareJid, kind: IdentifierKind, raw: string): Promise<{ value: string; expiresAt: number }> {
    if (kind === "jid")
      throw badRequest("a JID is proven by logging in with it: move to it with <move kind='jid'/> (§23.4)");
    if (!this.o.verifier.enabled)
      throw new StanzaError("service-unavailable", "phone and e-mail verification is not configured here");
    const value = normalizeIdentifier(kind, raw);
    const code = newCode();
    const { account, expiresAt } = await this.o.uow("identity.add", async (u) => {
      const me = await u.accounts.ensure(user, { seen: true });
      await u.tx.lockAccount(me);
      const repo = identityRepo(u.tx);
      const held = await u.tx.get<{ account_id: number; state: string }>(
        "SELECT account_id, state FROM identifiers WHERE kind = :kind AND value = :value",
        { kind, value },
      );
      if (held && Number(held.account_id) === me && held.state === "active")
        throw conflict(`${quote(value)} is already one of your identifiers`);
      if ((await repo.countIdentifiers(me, u.now)) >= this.cfg.maxIdentifiers)
        throw resourceLimit(
          `you hold ${this.cfg.maxIdentifiers} phone numbers and e-mail addresses (held ones included): remove one first`,
        );
      if ((await repo.countOtherOpenCodes(me, kind, value, "add", u.now)) >= this.cfg.maxPending)
        throw resourceLimit(
          `${this.cfg.maxPending} verifications are open: finish or let one expire`,
          "wait",
        );
      const expires = u.now + this.cfg.codeTtlSeconds * 1000;
      await repo.putCode(
        {
          account: me,
          kind,
          value,
          purpose: "add",
          codeHash: codeHash(me, kind, value, code),
          attemptsLeft: this.cfg.codeAttempts,
          expiresAt: expires,
        },
        u.now,
      );
      return { account: me, expiresAt: expires };
    });
    await this.deliver(account, { kind, to: value, code, purpose: "add", expires: iso(expiresAt) });
    return { value, expiresAt };
  }

  /** Sends a code after its commit; a failure takes the verification back out (nothing is left that cannot work). */
  private async deliver(
    account: AccountId,
    m: { kind: "tel" | "email"; to: string; code: string; purpose: "add" | "move"; expires: string },
  ): Promise<void> {
    try {
      await this.o.verifier.send(m);
    } catch (e) {
      if (!(e instanceof VerifierError)) throw e;
      this.o.log.warn(
        { event: "verifier-failed", kind: m.kind, err: e.message },
        "verification code not sent",
      );
      await this.o.uow("identity.unsend", (u) =>
        identityRepo(u.tx).deleteCode(account, m.kind, m.to, m.purpose),
      );
      throw new StanzaError(
        "service-unavailable",
        "the verification code could not be sent; try again later",
        {
          type: "wait",
        },
      );
    }
  }

  /**
   * Proves a new identifier with its code. Only now does `identifiers` get the row, so a number nobody proved
   * blocks nobody; one held by another account (a recycled number in its cooldown) or active there is refused.
   */
  async verify(user: BareJid, kind: IdentifierKind, raw: string, code: string): Promise<IdentifierView> {
    if (kind === "jid") throw badRequest("a JID is not verified by code");
    const value = normalizeIdentifier(kind, raw);
    const out = await this.o.uow("identity.verify", async (u) => {
      const me = await u.accounts.ensure(user, { seen: true });
      await u.tx.lockAccount(me);
      const check = await checkCode(u, me, kind, value, "add", code);
      if (!check.ok) return check;
      // The code is right: everything refused from here on is refused whole (thrown: nothing written).
      const repo = identityRepo(u.tx);
      const existing = await u.accounts.identifierOf(kind, value);
      if (existing && existing.account !== me) {
        if (existing.state === "held" && (existing.heldUntil ?? 0) > u.now)
          throw conflict(
            `${quote(value)} was recently another account's and is held until ${iso(existing.heldUntil ?? 0)}`,
          );
        if (existing.state === "active") throw conflict(`${quote(value)} belongs to another account`);
        await repo.deleteIdentifier(kind, value); // a lapsed hold: the cooldown is over
      }
      await repo.deleteCode(me, kind, value, "add");
      if (existing && existing.account === me) {
        await repo.reactivate(me, kind, value, u.now);
      } else {
        if ((await repo.countIdentifiers(me, u.now)) >= this.cfg.maxIdentifiers)
          throw resourceLimit(`you hold ${this.cfg.maxIdentifiers} phone numbers and e-mail addresses`);
        await u.accounts.addIdentifier(me, { kind, value, verifiedAt: u.now });
      }
      await u.emit("identifier.changed", { account: me, kind, to: value });
      return { ok: true as const };
    });
    if (!out.ok) throw out.error;
    return { kind, value, state: "active", verifiedAt: Date.now() };
  }

  /** Removes a phone number or e-mail address: it is held for the cooldown (a recycled number inherits nothing). */
  async remove(user: BareJid, kind: IdentifierKind, raw: string): Promise<{ heldUntil: number }> {
    if (kind === "jid") throw badRequest("your JID cannot be removed: move it (§23.4) or delete the account");
    const value = normalizeIdentifier(kind, raw);
    return this.o.uow("identity.remove", async (u) => {
      const me = await u.accounts.resolve(user);
      const existing = await u.accounts.identifierOf(kind, value);
      if (me === undefined || !existing || existing.account !== me || existing.state !== "active") {
        // An open verification of it is simply dropped.
        if (me !== undefined) {
          const open = await identityRepo(u.tx).code(me, kind, value, "add");
          if (open) {
            await identityRepo(u.tx).deleteCode(me, kind, value, "add");
            return { heldUntil: u.now };
          }
        }
        throw notFound(`${quote(value)} is not one of your identifiers`);
      }
      const until = u.now + this.cfg.cooldownSeconds * 1000;
      await identityRepo(u.tx).hold(me, kind, value, until);
      await u.emit("identifier.changed", { account: me, kind, from: value, to: "" });
      return { heldUntil: until };
    });
  }

  // ------------------------------------------------------------------------------------------- moves

  /**
   * The old account's statement (XEP-0283 0.2: the old account vouches for the new one): a JID move to `to`,
   * which the new JID accepts by logging in (`accept`). A newer offer replaces an open one.
   */
  async offerJid(user: BareJid, rawTo: string): Promise<MoveView> {
    const to = userJid(rawTo, "to");
    if (to === user) throw badRequest("'to' is your current JID");
    return this.o.uow("identity.move-offer", async (u) => {
      const me = await u.accounts.ensure(user, { seen: true });
      await u.tx.lockAccount(me);
      const existing = await u.accounts.identifierOf("jid", to);
      if (
        existing &&
        existing.state === "held" &&
        existing.account !== me &&
        (existing.heldUntil ?? 0) > u.now
      )
        throw conflict(`${quote(to)} is held after another move until ${iso(existing.heldUntil ?? 0)}`);
      const repo = identityRepo(u.tx);
      await repo.deleteOpenMoves(me, "jid");
      const m = {
        id: randomUUID(),
        account: me,
        kind: "jid" as const,
        oldValue: user,
        newValue: to,
        state: "offered" as const,
        expiresAt: u.now + this.cfg.moveOfferTtlSeconds * 1000,
      };
      await repo.insertMove(m, u.now);
      return moveView({ ...m, createdAt: u.now });
    });
  }

  /** Withdraws the account's open moves of `kind`. */
  async withdraw(user: BareJid, kind: IdentifierKind): Promise<boolean> {
    return this.o.uow("identity.move-withdraw", async (u) => {
      const me = await u.accounts.resolve(user);
      if (me === undefined) return false;
      const had = (await identityRepo(u.tx).openMoves(me, u.now)).some((m) => m.kind === kind);
      await identityRepo(u.tx).deleteOpenMoves(me, kind);
      return had;
    });
  }

  /**
   * The new JID accepts the old one's offer (its request proves it is logged in as the new JID): the move runs in
   * this one unit of work. Refused with `not-authorized` unless the old account offered exactly this move.
   */
  async acceptJid(user: BareJid, rawFrom: string): Promise<MoveView & { holders: number }> {
    const from = userJid(rawFrom, "from");
    return this.o.uow("identity.move", async (u) => {
      const offer = await identityRepo(u.tx).offerTo(from, user, u.now);
      if (!offer)
        throw new StanzaError(
          "not-authorized",
          `${quote(from)} has not confirmed a move to you: the old account must offer it first (XEP-0283)`,
        );
      const holders = await this.moveJid(u, offer);
      return { ...moveView({ ...offer, state: "done", doneAt: u.now }), holders };
    });
  }

  /**
   * The move itself, in the caller's unit of work. The new JID's own account, if it has one, is absorbed only when
   * it holds nothing (DECISIONS: accounts are never merged); otherwise the move is refused with `conflict`.
   */
  private async moveJid(u: UnitOfWork, m: MoveRow): Promise<number> {
    const acc = m.account;
    await u.tx.lockAccount(acc);
    const current = await u.accounts.jidOf(acc);
    if (current !== m.oldValue) throw conflict(`the account's JID is no longer ${quote(m.oldValue)}`);
    const repo = identityRepo(u.tx);
    const existing = await u.accounts.identifierOf("jid", m.newValue);
    if (existing) {
      if (existing.account === acc) {
        await repo.deleteIdentifier("jid", m.newValue); // moving back to a JID of its own still held
      } else if (existing.state === "held" && (existing.heldUntil ?? 0) > u.now) {
        throw conflict(`${quote(m.newValue)} is held after another move`);
      } else if (existing.state === "active") {
        if (await repo.hasData(existing.account))
          throw conflict(
            `${quote(m.newValue)} already has its own cardlink data (card, bindings, groups, book or requests): ` +
              "delete it (§18) before moving into it; accounts are not merged",
          );
        // An account with nothing of its own (the new JID's first requests created it): absorbed.
        await u.emit("account.deleting", { account: existing.account });
        await u.accounts.deleteAccount(existing.account);
      } else {
        await repo.deleteIdentifier("jid", m.newValue);
      }
    }
    const until = u.now + this.cfg.cooldownSeconds * 1000;
    await repo.hold(acc, "jid", m.oldValue, until);
    await u.accounts.addIdentifier(acc, { kind: "jid", value: m.newValue, primary: true, verifiedAt: u.now });
    await repo.dropResources(acc, m.oldValue);
    await u.emit("identifier.changed", { account: acc, kind: "jid", from: m.oldValue, to: m.newValue });
    // Every holder and co-member, and the account's own lane (its other devices): the notice and the card as the
    // new JID's. The card entry coalesces any pending one about the account onto this seq.
    const seq = await u.seq();
    const body: MovedBody = { old: m.oldValue, new: m.newValue };
    const payload = await u.queue.payload(KIND_MOVED, body);
    const spec = { subject: m.id, payload };
    const lanes = await u.queue.appendToAudience(KIND_MOVED, acc, spec);
    await u.queue.append(KIND_MOVED, [acc], spec);
    const hasCard = await u.tx.get<{ n: number }>("SELECT 1 AS n FROM cards WHERE account_id = :acc", {
      acc,
    });
    if (hasCard) await u.queue.appendToAudience("card", acc, { subject: String(acc), subjectAccount: acc });
    await repo.resequenceAbout(acc, seq);
    await repo.finishMove(acc, m.id, seq, u.now);
    await u.emit("identity.moved", { account: acc, from: m.oldValue, to: m.newValue, lanes: lanes.length });
    return lanes.length;
  }

  /**
   * A phone number or e-mail move old → new of one account: `to` must already be a verified identifier of the
   * account; the old one is re-verified by a code sent to it (`confirmMove`), or an operator overrides
   * (`overrideMove`, the `cardlink move-identifier` command).
   */
  async offerOther(user: BareJid, kind: "tel" | "email", rawFrom: string, rawTo: string): Promise<MoveView> {
    const from = normalizeIdentifier(kind, rawFrom);
    const to = normalizeIdentifier(kind, rawTo);
    if (from === to) throw badRequest("'from' and 'to' are the same");
    const code = newCode();
    const { view, account } = await this.o.uow("identity.move-offer", async (u) => {
      const me = await u.accounts.ensure(user, { seen: true });
      await u.tx.lockAccount(me);
      await checkPair(u, me, kind, from, to);
      const repo = identityRepo(u.tx);
      await repo.deleteOpenMoves(me, kind);
      const m = {
        id: randomUUID(),
        account: me,
        kind,
        oldValue: from,
        newValue: to,
        state: "confirming" as const,
        expiresAt: u.now + this.cfg.codeTtlSeconds * 1000,
      };
      await repo.insertMove(m, u.now);
      await repo.putCode(
        {
          account: me,
          kind,
          value: from,
          purpose: "move",
          moveId: m.id,
          codeHash: codeHash(me, kind, from, code),
          attemptsLeft: this.cfg.codeAttempts,
          expiresAt: m.expiresAt,
        },
        u.now,
      );
      return { view: moveView({ ...m, createdAt: u.now }), account: me };
    });
    if (!this.o.verifier.enabled)
      throw new StanzaError("service-unavailable", "phone and e-mail verification is not configured here");
    await this.deliver(account, {
      kind,
      to: from,
      code,
      purpose: "move",
      expires: view.expiresAt ? iso(view.expiresAt) : "",
    });
    return view;
  }

  /** The code sent to the old identifier completes its move. */
  async confirmMove(user: BareJid, id: string, code: string): Promise<MoveView> {
    const out = await this.o.uow("identity.move-confirm", async (u) => {
      const me = await u.accounts.resolve(user);
      const m = await identityRepo(u.tx).move(id);
      if (me === undefined || !m || m.account !== me || m.state !== "confirming" || m.kind === "jid")
        throw notFound(`no move ${quote(id)} waiting for a code`);
      const check = await checkCode(u, me, m.kind, m.oldValue, "move", code);
      if (!check.ok) return check;
      await finishOtherMove(u, m, this.cfg.cooldownSeconds);
      return { ok: true as const, view: moveView({ ...m, state: "done", doneAt: u.now }) };
    });
    if (!out.ok) throw out.error;
    return out.view;
  }

  // ------------------------------------------------------------------------------------------ services

  /** Stores service registration messages (deduplicated; the whole batch refused past the cap). */
  async syncServices(
    user: BareJid,
    items: ReadonlyArray<ServiceInput & { kind: IdentifierKind; identifier: string; receivedAt: number }>,
  ): Promise<{ added: number; updated: number }> {
    const norm = items.map((i) => ({ ...i, identifier: normalizeIdentifier(i.kind, i.identifier) }));
    return this.o.uow("identity.services-sync", async (u) => {
      const me = await u.accounts.ensure(user, { seen: true });
      await u.tx.lockAccount(me);
      const repo = identityRepo(u.tx);
      const mine = await this.identifierValues(u, me);
      let added = 0;
      let updated = 0;
      for (const i of norm) {
        if (!mine.has(`${i.kind}:${i.identifier}`))
          throw badRequest(`${quote(i.identifier)} is not one of your identifiers (verify it first, §23.2)`);
        const key = { kind: i.kind, identifier: i.identifier, service: i.service, provider: i.provider };
        const had = await repo.serviceByKey(me, key);
        if (had) {
          if (had.remark !== i.remark || had.receivedAt !== i.receivedAt) {
            await repo.refreshService(had.id, i.remark, Math.max(had.receivedAt, i.receivedAt));
            updated++;
          }
          continue;
        }
        await repo.insertService(
          { id: randomUUID(), account: me, ...key, remark: i.remark, receivedAt: i.receivedAt },
          u.now,
        );
        added++;
      }
      if ((await repo.countServices(me)) > this.cfg.maxServices)
        throw resourceLimit(`at most ${this.cfg.maxServices} registered services; nothing was stored`);
      return { added, updated };
    });
  }

  /** Active and held identifiers of the account, as `kind:value`. */
  private async identifierValues(u: UnitOfWork, me: AccountId): Promise<Set<string>> {
    const rows = await u.tx.all<{ kind: string; value: string }>(
      "SELECT kind, value FROM identifiers WHERE account_id = :me AND state IN ('active', 'held')",
      { me },
    );
    return new Set(rows.map((r) => `${r.kind}:${r.value}`));
  }

  async services(user: BareJid): Promise<ServiceView[]> {
    return this.o.read("identity.services", async (r) => {
      const me = await r.accounts.resolve(user);
      if (me === undefined) return [];
      return (await identityRepo(r.read).services(me)).map((s) => this.view(s));
    });
  }

  async removeService(user: BareJid, id: string): Promise<void> {
    await this.o.uow("identity.service-remove", async (u) => {
      const me = await u.accounts.resolve(user);
      if (me === undefined || !(await identityRepo(u.tx).deleteService(me, id)))
        throw notFound(`no registered service ${quote(id)}`);
    });
  }

  /** The client's update request (old → new): classifies the services under the old identifier. */
  async requestUpdate(
    user: BareJid,
    kind: IdentifierKind,
    rawFrom: string,
    rawTo: string,
  ): Promise<{ update: string; from: string; to: string; automatic: ServiceView[]; manual: ServiceView[] }> {
    const from = normalizeIdentifier(kind, rawFrom);
    const to = normalizeIdentifier(kind, rawTo);
    if (from === to) throw badRequest("'from' and 'to' are the same");
    return this.o.uow("identity.services-update", async (u) => {
      const me = await u.accounts.ensure(user, { seen: true });
      await u.tx.lockAccount(me);
      const mine = await this.identifierValues(u, me);
      const now = await u.accounts.identifierOf(kind, to);
      if (!now || now.account !== me || now.state !== "active")
        throw badRequest(`${quote(to)} is not a verified identifier of yours: verify it first (§23.2)`);
      if (!mine.has(`${kind}:${from}`)) throw notFound(`${quote(from)} is not one of your identifiers`);
      const repo = identityRepo(u.tx);
      for (const open of await repo.openUpdates(me)) await repo.dropUpdate(open.id);
      const items = await repo.servicesUnder(me, kind, from);
      if (items.length === 0) throw notFound(`no services are registered under ${quote(from)}`);
      const update = randomUUID();
      await repo.insertUpdate({ id: update, account: me, kind, oldValue: from, newValue: to }, u.now);
      const automatic: ServiceView[] = [];
      const manual: ServiceView[] = [];
      for (const s of items) {
        const c = this.classify(s);
        const next: ServiceRow = {
          ...s,
          status: c.mode === "automatic" ? "registered" : "manual",
          mode: c.mode,
          updateId: update,
          newIdentifier: to,
          ...(c.reason === undefined ? {} : { reason: c.reason }),
        };
        if (c.reason === undefined) delete next.reason;
        await repo.setService(s.id, next);
        (c.mode === "automatic" ? automatic : manual).push(this.view(next));
      }
      return { update, from, to, automatic, manual };
    });
  }

  /**
   * Type rules first (a remark's rule decides), then the provider list; anything else is manual. Case-insensitive.
   */
  classify(s: Pick<ServiceRow, "remark" | "provider">): { mode: "automatic" | "manual"; reason?: string } {
    const remark = s.remark.toLowerCase();
    const rule =
      remark === "" ? undefined : this.cfg.serviceRules.find((r) => r.remark.toLowerCase() === remark);
    const provider = this.provider(s.provider);
    if (rule?.mode === "manual")
      return { mode: "manual", reason: `type '${rule.remark}' is updated by hand` };
    if (rule?.mode !== "automatic" && provider?.automatic !== true)
      return {
        mode: "manual",
        reason: provider ? "the provider takes no automatic updates" : "unknown provider",
      };
    // Automatic by type rule or by the provider list: only a provider cardlink can reach can be updated.
    if (!provider) return { mode: "manual", reason: "unknown provider: no way to reach it" };
    if (provider.connector === undefined || !this.o.connectors.includes(provider.connector))
      return { mode: "manual", reason: "no connector reaches this provider" };
    return { mode: "automatic" };
  }

  private provider(name: string): IdentityConfig["providers"][number] | undefined {
    const n = name.toLowerCase();
    return n === "" ? undefined : this.cfg.providers.find((p) => p.name.toLowerCase() === n);
  }

  private view(s: ServiceRow): ServiceView {
    const contact = this.provider(s.provider)?.contact;
    return {
      id: s.id,
      kind: s.kind,
      identifier: s.identifier,
      service: s.service,
      provider: s.provider,
      remark: s.remark,
      receivedAt: s.receivedAt,
      status: s.status,
      ...(s.mode ? { mode: s.mode } : {}),
      ...(s.newIdentifier ? { newIdentifier: s.newIdentifier } : {}),
      ...(s.reason ? { reason: s.reason } : {}),
      ...(contact && s.mode === "manual" ? { contact } : {}),
    };
  }

  /**
   * The user's confirmation: the selected automatic items are queued for their providers, the deselected ones
   * join the manual list. Returns the selected items and the manual list.
   */
  async confirmUpdate(
    user: BareJid,
    update: string,
    selected: readonly string[],
  ): Promise<{ selected: ServiceView[]; manual: ServiceView[] }> {
    return this.o.uow("identity.services-confirm", async (u) => {
      const me = await u.accounts.resolve(user);
      const repo = identityRepo(u.tx);
      const up = me === undefined ? undefined : await repo.update(me, update);
      if (!up || up.state !== "confirming")
        throw notFound(`no update ${quote(update)} waiting for confirmation`);
      const items = await repo.servicesOfUpdate(update);
      const automatic = new Map(items.filter((s) => s.mode === "automatic").map((s) => [s.id, s]));
      for (const id of selected)
        if (!automatic.has(id)) throw badRequest(`${quote(id)} is not an automatic item of this update`);
      const chosen = new Set(selected);
      const out: ServiceView[] = [];
      for (const s of automatic.values()) {
        if (chosen.has(s.id)) {
          const next: ServiceRow = { ...s, status: "selected" };
          delete next.reason;
          await repo.setService(s.id, next);
          // The provider call: one signed webhook per item, retried and dead-lettered by the webhook channel; its
          // outcome comes back through `job.settled` (recordResult).
          const connector = this.provider(s.provider)?.connector;
          if (connector === undefined) throw new Error(`identity: automatic item ${s.id} has no connector`);
          const job = await u.queue.job(
            WEBHOOK_CHANNEL,
            webhookJob(
              connector,
              PROVIDER_EVENT,
              {
                registration: s.id,
                service: s.service,
                provider: s.provider,
                kind: up.kind,
                old: up.oldValue,
                new: up.newValue,
              },
              { now: u.now, account: up.account },
            ),
          );
          await repo.setJob(s.id, job.id);
          out.push(this.view(next));
        } else {
          await repo.setService(s.id, { ...s, status: "manual", mode: "manual", reason: "deselected" });
        }
      }
      await repo.confirmUpdate(up.account, update, u.now);
      await u.emit("identity.services-confirmed", { account: up.account, update });
      const manual = (await repo.servicesOfUpdate(update))
        .filter((s) => s.status === "manual")
        .map((s) => this.view(s));
      return { selected: out, manual };
    });
  }

  /** What the user still has to do by hand: manual, refused and failed items (of every update). */
  async manualList(user: BareJid): Promise<ServiceView[]> {
    return this.o.read("identity.manual", async (r) => {
      const me = await r.accounts.resolve(user);
      if (me === undefined) return [];
      return (await identityRepo(r.read).services(me))
        .filter((s) => s.status === "manual" || s.status === "refused" || s.status === "failed")
        .map((s) => this.view(s));
    });
  }

  /** The client marks a manual item done: it now counts under the new identifier. */
  async markDone(user: BareJid, id: string): Promise<ServiceView> {
    return this.o.uow("identity.service-done", async (u) => {
      const me = await u.accounts.resolve(user);
      const repo = identityRepo(u.tx);
      const s = me === undefined ? undefined : await repo.service(me, id);
      if (!s) throw notFound(`no registered service ${quote(id)}`);
      if (s.status !== "manual" && s.status !== "refused" && s.status !== "failed")
        throw badRequest(`${quote(id)} is not on your manual list (status ${s.status})`);
      const next: ServiceRow = { ...s, status: "done" };
      await repo.setService(id, next);
      return this.view(next);
    });
  }

  /** Expired codes and offers, lapsed holds. */
  async sweep(): Promise<number> {
    return this.o.uow("identity.sweep", (u) => identityRepo(u.tx).sweep(u.now));
  }
}

async function checkPair(
  u: UnitOfWork,
  me: AccountId,
  kind: IdentifierKind,
  from: string,
  to: string,
): Promise<void> {
  const old = await u.accounts.identifierOf(kind, from);
  if (!old || old.account !== me || old.state !== "active")
    throw notFound(`${quote(from)} is not one of your identifiers`);
  const next = await u.accounts.identifierOf(kind, to);
  if (!next || next.account !== me || next.state !== "active")
    throw badRequest(`verify ${quote(to)} first (<add-identifier/>, §23.2): a move needs both proven`);
}

/** A phone/e-mail move's completion: the old one held, the change announced, the move recorded done. */
async function finishOtherMove(u: UnitOfWork, m: MoveRow, cooldownSeconds: number): Promise<void> {
  const repo = identityRepo(u.tx);
  await repo.deleteCode(m.account, m.kind as "tel" | "email", m.oldValue, "move");
  await repo.hold(m.account, m.kind, m.oldValue, u.now + cooldownSeconds * 1000);
  await u.emit("identifier.changed", { account: m.account, kind: m.kind, from: m.oldValue, to: m.newValue });
  await repo.finishMove(m.account, m.id, await u.seq(), u.now);
}

/**
 * The operator override of a phone or e-mail move (`cardlink move-identifier`, docs/OPERATIONS.md): for a user who
 * lost the old number and cannot receive its code. Same checks and effects as a confirmed move, without the code.
 */
export async function overrideMove(
  uow: Uow,
  cooldownSeconds: number,
  jid: BareJid,
  kind: "tel" | "email",
  rawFrom: string,
  rawTo: string,
): Promise<MoveView> {
  const from = normalizeIdentifier(kind, rawFrom);
  const to = normalizeIdentifier(kind, rawTo);
  if (from === to) throw badRequest("'from' and 'to' are the same");
  return uow("identity.move-override", async (u) => {
    const me = await u.accounts.resolve(jid);
    if (me === undefined) throw notFound(`no account ${quote(jid)}`);
    await checkPair(u, me, kind, from, to);
    const repo = identityRepo(u.tx);
    await repo.deleteOpenMoves(me, kind);
    const m: MoveRow = {
      id: randomUUID(),
      account: me,
      kind,
      oldValue: from,
      newValue: to,
      state: "confirming",
      createdAt: u.now,
      expiresAt: u.now,
    };
    await repo.insertMove(m, u.now);
    await finishOtherMove(u, m, cooldownSeconds);
    return moveView({ ...m, state: "done", doneAt: u.now });
  });
}

export function moveView(m: Omit<MoveRow, "account">): MoveView {
  return {
    id: m.id,
    kind: m.kind,
    from: m.oldValue,
    to: m.newValue,
    state: m.state,
    ...(m.state !== "done" ? { expiresAt: m.expiresAt } : {}),
    ...(m.doneAt !== undefined ? { doneAt: m.doneAt } : {}),
  };
}

/**
 * `job.settled` of a provider call (in the settle unit of work): the item records the result — delivered →
 * `updated`; dead-lettered after a 4xx answer → `refused`; dead-lettered otherwise (attempts exhausted, connector
 * gone) → `failed`; another attempt follows → still `selected`, with the attempts and the last reason. A final
 * result is told to the user's own lane (`service-updated`).
 */
export async function recordResult(
  u: UnitOfWork,
  e: { channel: string; kind: string; uid: string; outcome: string; reason?: string; attempts: number },
): Promise<void> {
  if (e.channel !== WEBHOOK_CHANNEL || e.kind !== PROVIDER_EVENT) return;
  const repo = identityRepo(u.tx);
  const s = await repo.serviceOfJob(e.uid);
  if (!s || s.status !== "selected") return;
  const refused =
    e.outcome === "dead" && /^HTTP 4\d\d/.test(e.reason ?? "") && !/^HTTP (408|429)/.test(e.reason ?? "");
  const status =
    e.outcome === "done" ? "updated" : e.outcome === "retry" ? "selected" : refused ? "refused" : "failed";
  const reason =
    e.outcome === "done"
      ? null
      : e.outcome === "retry"
        ? `retrying: ${e.reason ?? ""}`
        : (e.reason ?? e.outcome);
  await repo.setResult(s.id, status, reason, e.attempts);
  if (status !== "selected") await u.queue.append(KIND_SERVICE, [s.account], { subject: s.id });
}

/** `account.deleting`: every row of this feature about the account. */
export async function eraseIdentity(u: UnitOfWork, account: AccountId): Promise<void> {
  for (const t of ["identity_codes", "identity_moves", "service_registrations", "service_updates"])
    await u.tx.run(`DELETE FROM ${t} WHERE account_id = :account`, { account });
}

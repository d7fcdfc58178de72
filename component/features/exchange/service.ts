/**
 * The exchange rules on the new core (docs/REDESIGN.md §1.2, §4.1): requests by JID, one-time codes, bindings,
 * unbinding and blocks. Each operation is ONE unit of work: its checks, its writes and its notices commit or
 * roll back together, so a refused request writes nothing and a bind that fails (already bound, or an in-tx
 * handler of `binding.created` throwing) also keeps the code a redeem would have burnt (issue 8's redeem race).
 *
 * The rules are the running app's (component/exchange.ts) with accounts instead of JIDs:
 * - a request or block naming an unknown JID ensures a placeholder account for it (§2.2), so the rows written
 *   are the same whether that user exists or not — nothing tells the sender which;
 * - lookups never create: cancel, answer, unbind and unblock resolve, and answer item-not-found when there is no
 *   account;
 * - refusals that must still write (an expired request or code is cleaned up) commit their cleanup and throw
 *   after the commit.
 */
import { randomUUID } from "node:crypto";
import { StanzaError, badRequest, conflict, notFound, quote } from "../../../stanzas/errors.js";
import type { Element } from "../../../stanzas/xml.js";
import type { AccountId } from "../../../storage/store.js";
import type { BareJid } from "../../runtime/accounts/api.js";
import { userJid } from "../../runtime/jid.js";
import { RateLimiter, retryText } from "../../runtime/ratelimit.js";
import type { Reader, UnitOfWork, Uow } from "../../runtime/uow.js";
import { normalizeCode, newCode } from "./code.js";
import { KIND_BINDING, KIND_DECLINED, KIND_REQUEST, KIND_UNBOUND, bindingFor } from "./render.js";
import { exchangeRepo, ordered, type BindingRow, type CodeRow, type RequestRow, type Via } from "./repo.js";

declare module "../../runtime/events.js" {
  interface DomainEvents {
    "binding.created": { binding: string; a: AccountId; b: AccountId; via: Via };
    "binding.removed": { binding: string; a: AccountId; b: AccountId };
    "exchange.blocked": { owner: AccountId; blocked: AccountId };
  }
}

/** Requests and codes a user may create per hour (spam brake on top of maxPendingPerUser), as today. */
export const CREATE_PER_HOUR = 60;

/** What the service needs of the runtime (index.ts builds it from Runtime; tests from a temp store). */
export interface ExchangeOptions {
  uow: Uow;
  read: Reader;
  servedHosts: readonly string[];
  requestTtlMs: number;
  codeTtlMs: number;
  maxPendingPerUser: number;
  codesPerUser: number;
  blocksPerUser: number;
  redeem: {
    failuresPerUser: number;
    failuresPerHost: number;
    windowMs: number;
    maxKeys: number;
    /** Called for each redeem refused by either limit (today's `cardlink_rate_limited_total{op="redeem"}`). */
    onLimited?: () => void;
  };
  /** The clock of the in-memory brakes (the stored times are the unit of work's `now`). */
  clock?: () => number;
}

export interface Bound {
  binding: BindingRow;
  /** The binding element as the caller sees it (the IQ result). */
  element: Element;
}
export interface RequestCreated {
  id: string;
  to: BareJid;
  expiresAt: number;
}
export interface CodeCreated {
  code: string;
  expiresAt: number;
}
export interface ListedRequest {
  id: string;
  peer: BareJid; // `from` for incoming, `to` for outgoing
  createdAt: number;
  expiresAt: number;
}

export class ExchangeService {
  private readonly created = new Map<string, number[]>();
  /** Places of the hourly brake taken by creations still in flight, per user. */
  private readonly inFlight = new Map<string, number>();
  private readonly redeemUser: RateLimiter;
  private readonly redeemHost: RateLimiter;
  private readonly clock: () => number;

  constructor(private readonly o: ExchangeOptions) {
    this.clock = o.clock ?? Date.now;
    const { failuresPerUser, failuresPerHost, windowMs, maxKeys } = o.redeem;
    this.redeemUser = new RateLimiter({ limit: failuresPerUser, windowMs, maxKeys, now: this.clock });
    this.redeemHost = new RateLimiter({ limit: failuresPerHost, windowMs, maxKeys, now: this.clock });
  }

  /** Forgets brake entries older than their windows (the feature's sweeper calls it). */
  prune(): void {
    const hourAgo = this.clock() - 3_600_000;
    for (const [user, times] of this.created)
      if ((times[times.length - 1] ?? 0) < hourAgo) this.created.delete(user);
    this.redeemUser.prune();
    this.redeemHost.prune();
  }

  // ---- requests ------------------------------------------------------------------------------------------

  /** Asks `toInput` to exchange cards with `user`. */
  async requestExchange(user: BareJid, toInput: string, device?: string): Promise<RequestCreated> {
    const to = this.peerJid(toInput, "to");
    if (to === user) throw badRequest("you cannot exchange cards with yourself");
    // Taken inside the unit of work (after the checks) and kept across its retries: the first take holds it.
    const brake: { place?: BrakePlace } = {};
    try {
      const r = await this.o.uow("exchange.request", async (u) => {
        const me = await u.accounts.ensure(user, { seen: true });
        // A placeholder for an unknown JID: the same rows as for a known one (§2.2).
        const peer = await u.accounts.ensure(to);
        const ex = exchangeRepo(u.tx);
        if (await ex.isBlocked(peer, me))
          throw new StanzaError("forbidden", `${to} does not accept exchange requests from you`);
        if (await ex.binding(me, peer)) throw conflict(`you and ${to} have already exchanged cards`);
        const existing = await ex.requestBetween(me, peer);
        if (existing && existing.expiresAt > u.now)
          throw conflict(`you already asked ${to} (request ${existing.id})`);
        const reverse = await ex.requestBetween(peer, me);
        if (reverse && reverse.expiresAt > u.now)
          throw conflict(`${to} has already asked you: answer request ${reverse.id} instead`);
        await u.tx.lockAccount(me);
        if ((await ex.countPendingFrom(me, u.now)) >= this.o.maxPendingPerUser) {
          throw new StanzaError(
            "policy-violation",
            `you have ${this.o.maxPendingPerUser} unanswered requests; wait for answers`,
            { type: "wait" },
          );
        }
        // After the checks, as today: a refused request is told why, not "try later".
        brake.place ??= this.takeBrake(user);
        if (existing) await this.dropRequest(u, existing); // an expired leftover
        const req: RequestRow = {
          id: randomUUID(),
          from: me,
          to: peer,
          ...(device ? { fromDevice: device } : {}),
          createdAt: u.now,
          expiresAt: u.now + this.o.requestTtlMs,
        };
        // Two identical requests at once: the pair's uniqueness decides, and the loser is told.
        if (!(await ex.insertRequest(req))) throw conflict(`you already asked ${to}`);
        await u.queue.append(KIND_REQUEST, [peer], { subject: req.id });
        return { id: req.id, to, expiresAt: req.expiresAt };
      });
      brake.place?.settle(true);
      return r;
    } finally {
      brake.place?.settle(false);
    }
  }

  /** Requests waiting for my answer (incoming) or the ones I sent (outgoing), oldest first. */
  async listRequests(user: BareJid, direction: "incoming" | "outgoing"): Promise<ListedRequest[]> {
    return this.o.read("exchange.requests", async (r) => {
      const me = await r.accounts.resolve(user);
      if (me === undefined) return [];
      const ex = exchangeRepo(r.read);
      const reqs =
        direction === "incoming" ? await ex.pendingFor(me, r.read.now) : await ex.pendingFrom(me, r.read.now);
      const jids = await r.accounts.jidsOf(reqs.map((q) => (direction === "incoming" ? q.from : q.to)));
      return reqs.map((q) => ({
        id: q.id,
        peer: jids.get(direction === "incoming" ? q.from : q.to) ?? "",
        createdAt: q.createdAt,
        expiresAt: q.expiresAt,
      }));
    });
  }

  /** Withdraws a request I sent: it disappears, with its notice if still undelivered. */
  async cancel(user: BareJid, id: string): Promise<void> {
    await this.o.uow("exchange.cancel", async (u) => {
      const me = await u.accounts.resolve(user);
      const req = me === undefined ? undefined : await exchangeRepo(u.tx).request(id);
      if (!req || req.from !== me) throw notFound(`you have no pending exchange request '${quote(id)}'`);
      await this.dropRequest(u, req);
    });
  }

  /** Accepts (binds; the binding as I see it) or declines (undefined) request `id` as `user`. */
  async answerRequest(
    user: BareJid,
    id: string,
    accept: boolean,
    device?: string,
  ): Promise<Bound | undefined> {
    const r = await this.o.uow("exchange.answer", async (u): Promise<Bound | "expired" | undefined> => {
      const me = await u.accounts.resolve(user);
      const ex = exchangeRepo(u.tx);
      const req = me === undefined ? undefined : await ex.request(id);
      if (!req || req.to !== me) throw notFound(`no exchange request '${quote(id)}' for you`);
      if (req.expiresAt <= u.now) {
        await this.dropRequest(u, req);
        return "expired"; // committed, then refused below
      }
      await u.accounts.ensure(user, { seen: true });
      if (!accept) {
        await this.dropRequest(u, req);
        const payload = await u.queue.payload(KIND_DECLINED, { id, by: me });
        await u.queue.append(KIND_DECLINED, [req.from], { subject: id, payload });
        return undefined;
      }
      return this.bind(u, req.from, req.fromDevice, me, device, "request");
    });
    if (r === "expired") throw new StanzaError("gone", `exchange request ${id} expired`);
    return r;
  }

  // ---- codes ---------------------------------------------------------------------------------------------

  /** Creates a one-time exchange code. No seq: nothing is delivered. */
  async createCode(user: BareJid, device?: string): Promise<CodeCreated> {
    const place = this.takeBrake(user);
    const max = this.o.codesPerUser;
    try {
      const r = await this.o.uow("exchange.code", async (u) => {
        const me = await u.accounts.ensure(user, { seen: true });
        const ex = exchangeRepo(u.tx);
        await u.tx.lockAccount(me);
        if ((await ex.countCodes(me, u.now)) >= max) {
          // wait: the oldest code expires within codeTtl, and then a new one can be made.
          throw new StanzaError(
            "resource-constraint",
            `you have ${max} unused exchange codes; use one or wait until one expires`,
            { type: "wait" },
          );
        }
        const c: CodeRow = {
          code: newCode(),
          owner: me,
          ...(device ? { deviceId: device } : {}),
          createdAt: u.now,
          expiresAt: u.now + this.o.codeTtlMs,
        };
        await ex.insertCode(c);
        return { code: c.code, expiresAt: c.expiresAt };
      });
      place.settle(true);
      return r;
    } finally {
      place.settle(false); // a refused code does not count against the hourly brake
    }
  }

  /**
   * Redeems a code as `user`. Reading the code, the checks, deleting it and binding are one unit of work: any
   * refusal but expiry — and any failure of the bind — leaves the code usable. Failed attempts (no such code,
   * expired) are limited per user and per sending domain, as today.
   */
  async redeemCode(user: BareJid, input: string, device?: string): Promise<Bound> {
    const code = normalizeCode(input);
    if (!code)
      throw badRequest(`'${quote(input)}' is not an exchange code (10 letters and digits, e.g. ABCDE-FGH23)`);
    const host = user.slice(user.indexOf("@") + 1);
    const wait = Math.max(this.redeemUser.retryAfter(user), this.redeemHost.retryAfter(host));
    if (wait > 0) {
      this.o.redeem.onLimited?.();
      const who = this.redeemUser.retryAfter(user) > 0 ? "from you" : `from ${host}`;
      throw new StanzaError(
        "policy-violation",
        `too many failed redeem attempts ${who}; retry in ${retryText(wait)}`,
        { type: "wait" },
      );
    }
    const r = await this.o.uow("exchange.redeem", async (u): Promise<Bound | "missing" | "expired"> => {
      const ex = exchangeRepo(u.tx);
      const c = await ex.code(code);
      if (!c) return "missing";
      if (c.expiresAt <= u.now) {
        await ex.takeCode(code);
        return "expired";
      }
      const me = await u.accounts.ensure(user, { seen: true });
      const owner = await u.accounts.jidOf(c.owner);
      if (c.owner === me) throw badRequest("you cannot redeem your own code");
      if (await ex.isBlocked(c.owner, me))
        throw new StanzaError("forbidden", `${owner} does not accept exchanges from you`);
      if (await ex.binding(c.owner, me)) throw conflict(`you and ${owner} have already exchanged cards`);
      if (!(await ex.takeCode(code))) throw notFound("no such exchange code (it was used just now)");
      return this.bind(u, c.owner, c.deviceId, me, device, "code");
    });
    if (r === "missing" || r === "expired") {
      this.redeemUser.hit(user);
      this.redeemHost.hit(host);
      if (r === "missing") throw notFound("no such exchange code (it may have been used already)");
      throw new StanzaError("gone", "this exchange code has expired; ask for a new one");
    }
    return r;
  }

  // ---- bindings ------------------------------------------------------------------------------------------

  /**
   * Binds x and y in the caller's unit of work: the binding row, both shares (the `binding` audience path),
   * requests either way settled (with their notices), a `binding` entry to both lanes, then the audience
   * opened both ways (tombstones cleared, each other's card appended: `binding` before `card` by ord).
   * Returns the binding as `me` (y, the one acting) sees it. Throws conflict when already bound.
   */
  private async bind(
    u: UnitOfWork,
    x: AccountId,
    xDevice: string | undefined,
    y: AccountId,
    yDevice: string | undefined,
    via: Via,
  ): Promise<Bound> {
    const ex = exchangeRepo(u.tx);
    const withDevice = async (id: AccountId, d: string | undefined): Promise<string[]> => {
      const ids = (await u.accounts.devices(id)).map((v) => v.deviceId);
      return d && !ids.includes(d) ? [...ids, d] : ids;
    };
    const [a, b] = ordered(x, y);
    const devices = new Map([
      [x, await withDevice(x, xDevice)],
      [y, await withDevice(y, yDevice)],
    ]);
    const binding: BindingRow = {
      id: randomUUID(),
      a,
      b,
      aDevices: devices.get(a) ?? [],
      bDevices: devices.get(b) ?? [],
      via,
      createdAt: u.now,
    };
    const seq = await u.seq();
    if (!(await ex.insertBinding(binding, seq))) {
      const [ja, jb] = [await u.accounts.jidOf(x), await u.accounts.jidOf(y)];
      throw conflict(`${ja} and ${jb} have already exchanged cards`);
    }
    for (const [from, to] of [
      [a, b],
      [b, a],
    ] as const) {
      const req = await ex.requestBetween(from, to);
      if (req) await this.dropRequest(u, req);
    }
    await u.queue.append(KIND_BINDING, [a, b], { subject: binding.id });
    await u.audience.opened(a, [b]);
    await u.audience.opened(b, [a]);
    await u.emit("binding.created", { binding: binding.id, a, b, via });
    return { binding, element: await bindingFor(u.accounts, binding, y) };
  }

  /**
   * Removes the binding between user and peer: shares go with it; both are told (`unbound`, appended before
   * the audience closes so a pair still visible through another path gets `unbound` then the refreshed card);
   * pairs that lost sight get tombstones and their pending `card` entries retracted. Answers the peer's
   * normalised JID (for the caller's log line).
   */
  async unbind(user: BareJid, peerInput: string): Promise<BareJid> {
    const peerJid = userJid(peerInput, "peer");
    await this.o.uow("exchange.unbind", async (u) => {
      const me = await u.accounts.resolve(user);
      const peer = await u.accounts.resolve(peerJid);
      const ex = exchangeRepo(u.tx);
      const b = me === undefined || peer === undefined ? undefined : await ex.binding(me, peer);
      if (!b || me === undefined || peer === undefined)
        throw notFound(`you have not exchanged cards with ${peerJid}`);
      await u.seq();
      await ex.deleteBinding(b.id);
      await u.queue.retract(KIND_BINDING, b.id, [b.a, b.b]);
      await u.queue.append(KIND_UNBOUND, [peer], { subject: String(me), subjectAccount: me });
      await u.queue.append(KIND_UNBOUND, [me], { subject: String(peer), subjectAccount: peer });
      await u.audience.closed([
        [me, peer],
        [peer, me],
      ]);
      await u.emit("binding.removed", { binding: b.id, a: b.a, b: b.b });
    });
    return peerJid;
  }

  // ---- blocks --------------------------------------------------------------------------------------------

  /** Blocks `otherInput`: its pending request to me disappears with its notice. */
  async block(user: BareJid, otherInput: string): Promise<void> {
    const otherJid = userJid(otherInput, "jid");
    const max = this.o.blocksPerUser;
    await this.o.uow("exchange.block", async (u) => {
      const me = await u.accounts.ensure(user, { seen: true });
      const other = await u.accounts.ensure(otherJid); // a placeholder if unknown (§2.2)
      const ex = exchangeRepo(u.tx);
      await u.tx.lockAccount(me);
      if (!(await ex.isBlocked(me, other)) && (await ex.countBlocks(me)) >= max) {
        // cancel: the list does not shrink by waiting; the user must unblock someone.
        throw new StanzaError("resource-constraint", `you already block ${max} accounts; unblock one first`, {
          type: "cancel",
        });
      }
      await ex.block(me, other, u.now);
      const req = await ex.requestBetween(other, me);
      if (req) await this.dropRequest(u, req);
      await u.emit("exchange.blocked", { owner: me, blocked: other });
    });
  }

  async unblock(user: BareJid, otherInput: string): Promise<void> {
    const otherJid = userJid(otherInput, "jid");
    await this.o.uow("exchange.unblock", async (u) => {
      const me = await u.accounts.resolve(user);
      const other = await u.accounts.resolve(otherJid);
      const done = me !== undefined && other !== undefined && (await exchangeRepo(u.tx).unblock(me, other));
      if (!done) throw notFound(`${otherJid} is not blocked`);
    });
  }

  /** The JIDs I block, sorted (today's order). */
  async blocklist(user: BareJid): Promise<BareJid[]> {
    return this.o.read("exchange.blocklist", async (r) => {
      const me = await r.accounts.resolve(user);
      if (me === undefined) return [];
      const jids = await r.accounts.jidsOf(await exchangeRepo(r.read).blockedBy(me));
      return [...jids.values()].sort();
    });
  }

  /**
   * The sweeper's step: expired requests go with their undelivered notices, expired codes go. At most `limit`
   * requests per unit of work (bounded batch); returns how many rows went.
   */
  async expire(limit = 500): Promise<number> {
    return this.o.uow("exchange.expire", async (u) => {
      const ex = exchangeRepo(u.tx);
      const reqs = await ex.expiredRequests(u.now, limit);
      for (const r of reqs) await this.dropRequest(u, r);
      return reqs.length + (await ex.deleteExpiredCodes(u.now));
    });
  }

  // ---- helpers -------------------------------------------------------------------------------------------

  /** Deletes a request and retracts its undelivered notice (it is moot now). */
  private async dropRequest(u: UnitOfWork, req: RequestRow): Promise<void> {
    await exchangeRepo(u.tx).deleteRequest(req.id);
    await u.queue.retract(KIND_REQUEST, req.id, [req.to]);
  }

  private peerJid(v: string, what: string): BareJid {
    const j = userJid(v, what);
    const domain = j.slice(j.indexOf("@") + 1);
    if (!this.o.servedHosts.includes(domain)) {
      throw new StanzaError(
        "not-acceptable",
        `cardlink exchanges cards between users of ${this.o.servedHosts.join(", ")} only`,
      );
    }
    return j;
  }

  private recent(user: string): number[] {
    const now = this.clock();
    return (this.created.get(user) ?? []).filter((t) => t > now - 3_600_000);
  }

  /**
   * Takes one of the user's places in the hour or refuses, in one synchronous step like today's rateLimit: the
   * creations a client sends at once are counted one after another, not each against the count from before
   * the burst (a check before the unit of work and a count after its commit let a whole burst through). The
   * place is counted for the hour when the creation committed (`settle(true)`); refused or rolled back
   * (`settle(false)`), it is given back and costs nothing. Only the first settle counts.
   */
  private takeBrake(user: string): BrakePlace {
    const taken = this.inFlight.get(user) ?? 0;
    if (this.recent(user).length + taken >= CREATE_PER_HOUR) {
      throw new StanzaError(
        "policy-violation",
        `at most ${CREATE_PER_HOUR} exchange requests and codes per hour; try later`,
        { type: "wait" },
      );
    }
    this.inFlight.set(user, taken + 1);
    let open = true;
    return {
      settle: (committed) => {
        if (!open) return;
        open = false;
        const left = (this.inFlight.get(user) ?? 1) - 1;
        if (left > 0) this.inFlight.set(user, left);
        else this.inFlight.delete(user);
        if (committed) {
          const recent = this.recent(user);
          recent.push(this.clock());
          this.created.set(user, recent);
        }
      },
    };
  }
}

/** A place in a user's hourly brake, taken by a creation in flight (ExchangeService.takeBrake). */
interface BrakePlace {
  settle(committed: boolean): void;
}

/**
 * Issue 14's delete-user, inside its unit of work (`account.deleting`): every binding of the account goes as
 * `unbind` does it (binding entry retracted, `unbound` appended to the peer, both audiences closed,
 * `binding.removed` emitted); every request from or to it goes with its undelivered notice; its codes and its
 * own blocks go. Others' blocks of the account stay (their data, as today).
 */
export async function eraseExchangeRows(u: UnitOfWork, e: { account: AccountId }): Promise<void> {
  const me = e.account;
  const ex = exchangeRepo(u.tx);
  for (const b of await ex.bindingsOf(me)) {
    const peer = b.a === me ? b.b : b.a;
    await ex.deleteBinding(b.id);
    await u.queue.retract(KIND_BINDING, b.id, [b.a, b.b]);
    await u.queue.append(KIND_UNBOUND, [peer], { subject: String(me), subjectAccount: me });
    await u.audience.closed([
      [me, peer],
      [peer, me],
    ]);
    await u.emit("binding.removed", { binding: b.id, a: b.a, b: b.b });
  }
  for (const r of await ex.requestsOf(me)) {
    await ex.deleteRequest(r.id);
    await u.queue.retract(KIND_REQUEST, r.id, [r.to]);
  }
  await ex.deleteCodesOf(me);
  await ex.deleteBlocksOf(me);
}

/**
 * The card as it goes on the wire (docs/REDESIGN.md §1.2 features/cards/render.ts): the <card/> element in the
 * three formats, a holder's view through the union of the policies of every path that shows the card
 * (unionView, §2.5.4; one policy is filterCard exactly, so views and hashes are what component/cards.ts gives
 * today), the `card` stream kind's renderer, and a small cache of renderings keyed (owner, version, stored hash, policy hash).
 */
import { createHash } from "node:crypto";
import { cardHash, type Card } from "../../../stanzas/model/card.js";
import { unionView, type SharePolicy } from "../../../stanzas/model/policy.js";
import { NS } from "../../../stanzas/ns.js";
import { cardToVCardTemp } from "../../../stanzas/vcard-temp.js";
import { serializeVCard4 } from "../../../stanzas/vcard4.js";
import { cardToVcf } from "../../../stanzas/vcf.js";
import { prerendered, xml, type Element } from "../../../stanzas/xml.js";
import type { AccountId } from "../../../storage/store.js";
import { measure } from "../../runtime/budget.js";
import type { PendingEntry, RenderContext, StreamKind } from "../../runtime/queue/api.js";
import { cardsRepo, type StoredCard } from "./repo.js";

export type Format = "vcard4" | "vcard-temp" | "vcf";
export const FORMATS: readonly Format[] = ["vcard4", "vcard-temp", "vcf"];

/** Card content in the requested format, as the child of a <card/> element. */
export function cardContent(card: Card, format: Format): Element | string {
  if (format === "vcard-temp") return cardToVCardTemp(card);
  if (format === "vcf") return cardToVcf(card);
  return serializeVCard4(card);
}

/** Bytes a card's content takes on the wire in `format` (the .vcf text XML-escaped, as inside <card/>). */
export function renderedBytes(card: Card, format: Format): number {
  const content = cardContent(card, format);
  return typeof content === "string" ? measure(xml("c", {}, content)) - "<c></c>".length : measure(content);
}

export function cardElement(
  attrs: { owner: string; version: number; hash: string },
  content: Element | string | null,
): Element {
  return xml(
    "card",
    { xmlns: NS.CARDLINK, owner: attrs.owner, version: String(attrs.version), hash: attrs.hash },
    content,
  );
}

/** Who is looking: the owner (the stored card, unfiltered) or a holder under these policies (one per path). */
export type Viewer = "owner" | readonly (SharePolicy | null)[];

/** A rendering without the owner's JID (which may change, §2.8.3): the cached part. */
interface Rendered {
  hash: string;
  content: Element | string;
  /**
   * The whole `<card/>` for the owner JID it was last asked with, serialized once (stanzas/xml.ts prerendered):
   * N holders with the same view of one version cost one serialization, and measuring an update against the
   * page budget and writing its IQ copy that string instead of serializing the card again.
   */
  card?: { jid: string; el: Element };
}

/** The cache bound: entries are one card rendering each (≤ card.maxBytes), so this caps it near 100 MB. */
export const RENDER_CACHE_ENTRIES = 1000;

/**
 * Renderings keyed (owner, version, stored hash, format, policy hash): a fan-out of one change to many holders with the same
 * policy (the common case: none) serializes once. A version bump makes the old keys unreachable; the LRU bound
 * drops them. Elements are shared, never mutated (ltx serializes them as they are).
 */
export class CardRenderCache {
  private readonly map = new Map<string, Rendered>();
  hits = 0;
  misses = 0;

  constructor(private readonly max = RENDER_CACHE_ENTRIES) {}

  get size(): number {
    return this.map.size;
  }

  /** The holder's view of `stored` in `format`, with the hash of that view. */
  render(stored: StoredCard, viewer: Viewer, format: Format): Rendered {
    // The stored hash is in the key, not only (owner, version): a version number can come back with other
    // content (an account deleted and reactivated in place starts its card at version 1 again; several stores in
    // one process, as in the test suite, number accounts alike), and a rendering must never outlive its content.
    const key = `${stored.owner}:${stored.version}:${stored.hash}:${format}:${policyHash(viewer)}`;
    const hit = this.map.get(key);
    if (hit) {
      this.hits++;
      this.map.delete(key); // re-insert: most recently used last
      this.map.set(key, hit);
      return hit;
    }
    this.misses++;
    const r = renderView(stored, viewer, format);
    if (this.map.size >= this.max) this.map.delete(this.map.keys().next().value as string);
    this.map.set(key, r);
    return r;
  }
}

/** A stable key of a viewer: the owner, "everything" (any null policy), or a digest of the sorted policies. */
export function policyHash(viewer: Viewer): string {
  if (viewer === "owner") return "owner";
  if (viewer.some((p) => p === null)) return "all";
  const canon = viewer.map((p) => canonicalPolicy(p as SharePolicy)).sort();
  return createHash("sha256").update(JSON.stringify(canon)).digest("base64url").slice(0, 22);
}

function canonicalPolicy(p: SharePolicy): string {
  return JSON.stringify(Object.fromEntries(Object.entries(p).sort(([a], [b]) => (a < b ? -1 : 1))));
}

/**
 * The view and its hash. The owner and a holder who sees everything get the stored hash (it is the hash of the
 * whole card); a filtered view gets the hash of what the holder sees, as component/cards.ts does.
 */
export function renderView(stored: StoredCard, viewer: Viewer, format: Format): Rendered {
  if (viewer === "owner" || viewer.some((p) => p === null)) {
    return { hash: stored.hash, content: cardContent(stored.card, format) };
  }
  const view = unionView(stored.card, viewer);
  return { hash: cardHash(view), content: cardContent(view, format) };
}

/** One process-wide cache, shared by get, sync and delivery (createCardlink builds one per process anyway). */
export const renderCache = new CardRenderCache();

/** A <card/> for `ownerJid` as `viewer` sees it. */
export function cardFor(
  stored: StoredCard,
  ownerJid: string,
  viewer: Viewer,
  format: Format,
  cache = renderCache,
): Element {
  const r = cache.render(stored, viewer, format);
  // Keyed by the JID as well: a JID change (issue 12) renders the next one afresh.
  if (r.card?.jid !== ownerJid) {
    const el = cardElement({ owner: ownerJid, version: stored.version, hash: r.hash }, r.content);
    r.card = { jid: ownerJid, el: prerendered(el) };
  }
  return r.card.el;
}

/**
 * The `card` stream kind (§2.3.2): one entry per holder lane, subject = the owner's account, coalesced to the
 * newest change. Rendered at delivery through the holder's current view, so a withdrawn field or a closed path
 * is honoured: no path left (or no card) = moot.
 */
export function cardKind(cache = renderCache): StreamKind {
  // The parsed cards of recent versions: a delivery round is per consumer, so one owner's change to N holders
  // would otherwise read and JSON-parse the same card N times. Each round still reads the current (version,
  // hash), so a newer card is never missed; the bound drops owners not delivered lately.
  const parsed = new Map<AccountId, StoredCard>();
  const current = async (r: RenderContext, owner: AccountId): Promise<StoredCard | undefined> => {
    const repo = cardsRepo(r.read);
    const v = await repo.version(owner);
    if (!v) return undefined;
    const hit = parsed.get(owner);
    if (hit && hit.version === v.version && hit.hash === v.hash) return hit;
    const stored = await repo.get(owner);
    if (!stored) return undefined;
    parsed.delete(owner);
    if (parsed.size >= RENDER_CACHE_ENTRIES) parsed.delete(parsed.keys().next().value as AccountId);
    parsed.set(owner, stored);
    return stored;
  };
  return {
    name: "card",
    coalesce: "replace",
    subject: "account",
    wake: true,
    async render(r: RenderContext, e: PendingEntry): Promise<Element | null> {
      const owner = (e.subjectAccount ?? Number(e.subject)) as AccountId;
      const stored = await r.cache.get("card", String(owner), () => current(r, owner));
      if (!stored) return null;
      const policies = await r.audience.policies(owner, e.lane);
      if (policies.length === 0) return null;
      const jid = await r.cache.get("jid", String(owner), () => r.accounts.jidOf(owner));
      // The compact form (PROTOCOL §10.8) is §5.2's `vcf` rendering of the same view: one text node.
      return cardFor(stored, jid, policies, r.compact ? "vcf" : "vcard4", cache);
    },
  };
}

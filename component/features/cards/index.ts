/**
 * The cards feature module (docs/REDESIGN.md §1.2, §3.6): routes card get/set and sync, the `card` stream kind.
 * Written beside the old component/cards.ts, which serves the running app until the switch (issue 8 S11): this
 * module is not listed in component/features.ts yet, so nothing attaches it.
 */
import { StanzaError } from "../../../stanzas/errors.js";
import { parseNonNegativeInt } from "../../../stanzas/cardlink.js";
import { NS } from "../../../stanzas/ns.js";
import { xml, type Element } from "../../../stanzas/xml.js";
import type { AccountId, Seq } from "../../../storage/store.js";
import type { FeatureModule, Runtime } from "../../runtime/context.js";
import type { TxHandler } from "../../runtime/events.js";
import { optionalUserJid } from "../../runtime/jid.js";
import { CARD_MIGRATIONS } from "./migrations.js";
import { cardsRepo } from "./repo.js";
import { cardKind } from "./render.js";
import { checkRenderings, getCard, parseFormat, parseSubmitted, storeCard } from "./service.js";
import { SYNC_PAGE, sync } from "./sync.js";

declare module "../../runtime/events.js" {
  interface DomainEvents {
    /** In-tx from storeCard: the owner's card changed to `version` at `seq` (issue 9: linked entries follow). */
    "card.updated": { owner: AccountId; version: number; seq: Seq };
  }
}

async function setCard(rt: Runtime, user: string, el: Element): Promise<Element> {
  // Compared normalized, like every user attribute: Alice@Localhost is alice@localhost.
  const owner = optionalUserJid(el, "owner");
  if (owner && owner !== user) throw new StanzaError("forbidden", "you can only change your own card");
  const card = parseSubmitted(el, rt.config.card);
  checkRenderings(card, rt.config.card);
  const r = await storeCard(rt, user, card);
  if (r.changed) {
    rt.metrics.inc("cardlink_card_updates_total");
    rt.metrics.inc("cardlink_fanout_entries_total", undefined, r.holders.length);
    rt.log.info(
      { event: "card-updated", owner: user, version: r.version, holders: r.holders.length },
      "card updated",
    );
  }
  return xml("card", {
    xmlns: NS.CARDLINK,
    owner: user,
    version: String(r.version),
    hash: r.hash,
    changed: String(r.changed),
  });
}

/**
 * Issue 14's delete-user, in its unit of work: the card row goes. Holders lose sight through their paths'
 * handlers (exchange closes the bindings' audiences, which retracts the pending `card` entries).
 */
export const eraseCardRows: TxHandler<"account.deleting"> = async (u, e) => {
  await cardsRepo(u.tx).delete(e.account);
};

export const cards: FeatureModule = {
  name: "cards",
  migrations: CARD_MIGRATIONS,
  kinds: [cardKind()],
  attach(rt: Runtime): void {
    const ns = NS.CARDLINK;
    rt.events.onTx("account.deleting", eraseCardRows);
    rt.router.iq("set", ns, "card", (c) => setCard(rt, c.user, c.payload));
    rt.router.iq("get", ns, "card", (c) =>
      getCard(rt, c.user, optionalUserJid(c.payload, "owner") ?? c.user, parseFormat(c.payload.attrs.format)),
    );
    rt.router.iq("get", ns, "sync", (c) => {
      const since = parseNonNegativeInt(c.payload.attrs.since, "since") ?? 0;
      const max =
        Math.min(parseNonNegativeInt(c.payload.attrs.max, "max", 10_000) ?? SYNC_PAGE, SYNC_PAGE) ||
        SYNC_PAGE;
      return sync(rt, { user: c.user, since, max, format: parseFormat(c.payload.attrs.format) });
    });
  },
};

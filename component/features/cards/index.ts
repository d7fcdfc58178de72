/**
 * The cards feature module (docs/REDESIGN.md §1.2, §3.6): routes card get/set and sync, the `card` stream kind.
 * Its ad-hoc commands (commands.ts: show-card, edit-card) are registered here, before exchange's, as today.
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
import { cardCommands } from "./commands.js";
import {
  checkRenderings,
  getCard,
  parseFormat,
  parseSubmitted,
  storeCard,
  type CardStored,
} from "./service.js";
import { SYNC_PAGE, sync } from "./sync.js";

declare module "../../runtime/events.js" {
  interface DomainEvents {
    /** In-tx from storeCard: the owner's card changed to `version` at `seq` (issue 9: linked entries follow). */
    "card.updated": { owner: AccountId; version: number; seq: Seq };
  }
}

/** Metrics and the card-updated log line, for the IQ route and the edit-card command alike. */
function stored(rt: Runtime, user: string, r: CardStored): void {
  if (r.changed) {
    rt.metrics.inc("cardlink_card_updates_total");
    rt.metrics.inc("cardlink_fanout_entries_total", undefined, r.holders.length);
    rt.log.info(
      { event: "card-updated", owner: user, version: r.version, holders: r.holders.length },
      "card updated",
    );
  }
}

async function setCard(rt: Runtime, user: string, el: Element): Promise<Element> {
  // Compared normalized, like every user attribute: Alice@Localhost is alice@localhost.
  const owner = optionalUserJid(el, "owner");
  if (owner && owner !== user) throw new StanzaError("forbidden", "you can only change your own card");
  const card = parseSubmitted(el, rt.config.card);
  checkRenderings(card, rt.config.card);
  const r = await storeCard(rt, user, card);
  stored(rt, user, r);
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
  onAccountDeleting: eraseCardRows,
  attach(rt: Runtime): void {
    const ns = NS.CARDLINK;
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
    for (const cmd of cardCommands({
      uow: rt.uow,
      read: rt.read,
      limits: rt.config.card,
      stored: (user, r) => stored(rt, user, r),
    }))
      rt.adhoc.register(cmd);
  },
};

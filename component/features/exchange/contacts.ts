/**
 * Contacts and share policies (docs/REDESIGN.md §1.2: `<share/>` is a binding-path policy): the list of my
 * bindings with the policy I give each peer, and narrowing/widening that policy. The card itself is the cards
 * feature's: the contact's card version comes from a reader the module is given (features/cards/api.ts once it
 * is merged), and a policy change refreshes the holder's copy through the audience part, which appends the
 * `card` stream kind by name — nothing of features/cards is imported here.
 */
import type { SharePolicy } from "../../../stanzas/model/policy.js";
import { notFound } from "../../../stanzas/errors.js";
import type { Element } from "../../../stanzas/xml.js";
import type { AccountId, ReadTx } from "../../../storage/store.js";
import type { BareJid } from "../../runtime/accounts/api.js";
import { userJid } from "../../runtime/jid.js";
import type { Reader, Uow } from "../../runtime/uow.js";
import { bindingWith } from "./render.js";
import { exchangeRepo } from "./repo.js";

const SET_POLICY = "UPDATE shares SET policy = :policy, seq = :seq WHERE owner = :owner AND holder = :holder";

export interface Contact {
  peer: BareJid;
  binding: Element; // as I see it
  /** The policy I give the peer (null = everything). */
  policy: SharePolicy | null;
  /** The peer's card version when the peer shares with me and has a card. */
  version?: number;
}

/** Cards' read function (features/cards/api.ts cardVersions: many owners at once), injected by the module. */
export type CardVersions = (
  read: ReadTx,
  owners: readonly AccountId[],
) => Promise<ReadonlyMap<AccountId, number>>;

/** Sets the policy under which `holderInput` sees my card; refreshes their copy in the same unit of work. */
export async function setShare(
  uow: Uow,
  user: BareJid,
  holderInput: string,
  policy: SharePolicy | null,
): Promise<void> {
  const holderJid = userJid(holderInput, "holder");
  await uow("exchange.share", async (u) => {
    const me = await u.accounts.resolve(user);
    const holder = await u.accounts.resolve(holderJid);
    const seq = me !== undefined && holder !== undefined ? await u.seq() : undefined;
    const n =
      seq === undefined
        ? 0
        : (
            await u.tx.run(SET_POLICY, {
              policy: policy ? JSON.stringify(policy) : null,
              seq,
              owner: me as AccountId,
              holder: holder as AccountId,
            })
          ).changes;
    if (n === 0 || me === undefined || holder === undefined)
      throw notFound(`${holderJid} does not hold your card`);
    // opened() appends the owner's `card` entry to the holder when there is a card (no tombstone exists
    // while the share does): the refresh today's setPolicy writes.
    await u.audience.opened(me, [holder]);
  });
}

/**
 * My contacts in binding order, peer JIDs sorted by the caller's paging. A fixed number of statements however many
 * contacts there are (bindings, both directions' shares, the JIDs, the peers' card versions): on PostgreSQL each
 * statement is a round trip, and the per-contact reads this replaced were ~4 per contact (bench/queries.ts counts).
 */
export async function contacts(read: Reader, user: BareJid, cardVersions?: CardVersions): Promise<Contact[]> {
  return read("exchange.contacts", async (r) => {
    const me = await r.accounts.resolve(user);
    if (me === undefined) return [];
    const repo = exchangeRepo(r.read);
    const bindings = await repo.bindingsOf(me);
    if (bindings.length === 0) return [];
    const mine = new Map<AccountId, string | null>();
    const theirs = new Set<AccountId>();
    for (const s of await repo.sharesAround(me)) {
      if (s.owner === me) mine.set(s.holder, s.policy);
      else theirs.add(s.owner);
    }
    const peers = bindings.map((b) => (b.a === me ? b.b : b.a));
    const jids = await r.accounts.jidsOf([me, ...peers]);
    const sharing = peers.filter((p) => theirs.has(p));
    const versions = cardVersions && sharing.length ? await cardVersions(r.read, sharing) : new Map();
    return bindings.map((b, i): Contact => {
      const peer = peers[i] as AccountId;
      const jid = jids.get(peer);
      if (jid === undefined) throw new Error(`exchange: account ${peer} of binding ${b.id} has no JID`);
      const policy = mine.get(peer);
      const version = theirs.has(peer) ? versions.get(peer) : undefined;
      return {
        peer: jid,
        binding: bindingWith(jids, b, me),
        policy: policy ? (JSON.parse(policy) as SharePolicy) : null,
        ...(version === undefined ? {} : { version }),
      };
    });
  });
}

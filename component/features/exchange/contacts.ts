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
import { bindingFor } from "./render.js";
import { exchangeRepo } from "./repo.js";

const SET_POLICY = "UPDATE shares SET policy = :policy, seq = :seq WHERE owner = :owner AND holder = :holder";
const POLICY = "SELECT policy FROM shares WHERE owner = :owner AND holder = :holder";

export interface Contact {
  peer: BareJid;
  binding: Element; // as I see it
  /** The policy I give the peer (null = everything). */
  policy: SharePolicy | null;
  /** The peer's card version when the peer shares with me and has a card. */
  version?: number;
}

/** Cards' read function (features/cards/api.ts cardVersion), injected by the module. */
export type CardVersion = (read: ReadTx, owner: AccountId) => Promise<number | undefined>;

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

/** My contacts in binding order, peer JIDs sorted by the caller's paging. */
export async function contacts(read: Reader, user: BareJid, cardVersion?: CardVersion): Promise<Contact[]> {
  return read("exchange.contacts", async (r) => {
    const me = await r.accounts.resolve(user);
    if (me === undefined) return [];
    const out: Contact[] = [];
    for (const b of await exchangeRepo(r.read).bindingsOf(me)) {
      const peer = b.a === me ? b.b : b.a;
      const mine = await r.read.get<{ policy: string | null }>(POLICY, { owner: me, holder: peer });
      const theirs = await r.read.get<{ policy: string | null }>(POLICY, { owner: peer, holder: me });
      const version = theirs && cardVersion ? await cardVersion(r.read, peer) : undefined;
      out.push({
        peer: await r.accounts.jidOf(peer),
        binding: await bindingFor(r.accounts, b, me),
        policy: mine?.policy ? (JSON.parse(mine.policy) as SharePolicy) : null,
        ...(version === undefined ? {} : { version }),
      });
    }
    return out;
  });
}

/**
 * Share policies: which part of a card a holder sees. Pure model, no XML (stanzas/cardlink.ts has the
 * <share/> codec).
 */
import type { Card, CardItemBase, FieldName, ItemField } from "./card.js";

export interface SharePolicy {
  /**
   * Fields to share; absent means all. `fn` is always shared: a card without a name is useless to its
   * receiver.
   */
  fields?: readonly FieldName[];
  /**
   * When present, tel/email/adr/url/impp entries are kept only if they carry at least one of these TYPE
   * values (case-insensitive). Entries without any TYPE are dropped too: untagged data is not presumed to be
   * "work".
   */
  types?: readonly string[];
}

/**
 * The part of `card` a policy allows to be shared, as a fresh object (keys kept, nothing else recomputed).
 */
export function filterCard(card: Card, policy: SharePolicy): Card {
  const src = structuredClone(card);
  const share = (f: FieldName): boolean =>
    f === "fn" || policy.fields === undefined || policy.fields.includes(f);
  const wanted = policy.types?.map((t) => t.toLowerCase());
  const typeOk = (item: CardItemBase): boolean =>
    wanted === undefined || item.types.some((t) => wanted.includes(t.toLowerCase()));
  const items = <T extends CardItemBase>(f: ItemField, list: T[]): T[] =>
    share(f) ? list.filter(typeOk) : [];
  return {
    fn: src.fn,
    ...(share("n") && src.n ? { n: src.n } : {}),
    nickname: share("nickname") ? src.nickname : [],
    ...(share("org") && src.org ? { org: src.org } : {}),
    ...(share("title") && src.title !== undefined ? { title: src.title } : {}),
    ...(share("role") && src.role !== undefined ? { role: src.role } : {}),
    tel: items("tel", src.tel),
    email: items("email", src.email),
    adr: items("adr", src.adr),
    url: items("url", src.url),
    impp: items("impp", src.impp),
    ...(share("note") && src.note !== undefined ? { note: src.note } : {}),
    ...(share("bday") && src.bday !== undefined ? { bday: src.bday } : {}),
    ...(share("photo") && src.photo ? { photo: src.photo } : {}),
    categories: share("categories") ? src.categories : [],
  };
}

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

/**
 * What a holder sees of `card` when several audience paths show it (docs/REDESIGN.md §2.5.4): the union of the
 * paths' views. Any `null` policy (share everything) gives the whole card. Otherwise a field is present if any
 * policy shows it, and a tel/email/adr/url/impp entry if any policy shows that entry (entries matched by their
 * `key`, which is unique within one card); entries keep the card's order, so the result does not depend on the
 * order of `policies`. One policy is `filterCard` exactly, so every holder's view (and its hash) stays what it
 * was while bindings are the only path.
 */
export function unionView(card: Card, policies: readonly (SharePolicy | null)[]): Card {
  if (policies.length === 0) throw new Error("unionView: no policy (the holder does not see this card)");
  if (policies.some((p) => p === null)) return structuredClone(card);
  const only = policies.length === 1 ? policies[0] : undefined;
  if (only) return filterCard(card, only);
  const views = (policies as readonly SharePolicy[]).map((p) => filterCard(card, p));
  const src = structuredClone(card);
  const some = (f: (v: Card) => boolean): boolean => views.some(f);
  const items = <T extends CardItemBase>(f: ItemField, list: T[]): T[] => {
    const keys = new Set<string>();
    for (const v of views) for (const item of v[f]) keys.add(item.key);
    return list.filter((item) => keys.has(item.key));
  };
  return {
    fn: src.fn,
    ...(src.n && some((v) => v.n !== undefined) ? { n: src.n } : {}),
    nickname: some((v) => v.nickname.length > 0) ? src.nickname : [],
    ...(src.org && some((v) => v.org !== undefined) ? { org: src.org } : {}),
    ...(src.title !== undefined && some((v) => v.title !== undefined) ? { title: src.title } : {}),
    ...(src.role !== undefined && some((v) => v.role !== undefined) ? { role: src.role } : {}),
    tel: items("tel", src.tel),
    email: items("email", src.email),
    adr: items("adr", src.adr),
    url: items("url", src.url),
    impp: items("impp", src.impp),
    ...(src.note !== undefined && some((v) => v.note !== undefined) ? { note: src.note } : {}),
    ...(src.bday !== undefined && some((v) => v.bday !== undefined) ? { bday: src.bday } : {}),
    ...(src.photo && some((v) => v.photo !== undefined) ? { photo: src.photo } : {}),
    categories: some((v) => v.categories.length > 0) ? src.categories : [],
  };
}

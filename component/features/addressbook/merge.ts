/**
 * How a linked entry combines the owner's edits with the card it follows (docs/DECISIONS.md, issue 9): per
 * field of the card model (FIELD_NAMES: fn, n, tel, email, …, each list field as a whole). A field the owner
 * set to something other than what the card says is the owner's (`edited`); a card update changes only the
 * fields that are not. An edit that sets a field back to the card's value gives it back to the card.
 */
import { FIELD_NAMES, normalizeCard, type Card, type FieldName } from "../../../stanzas/model/card.js";

/** The field's value in canonical form (item keys included: normalizeCard computes them from the values). */
function value(c: Card, f: FieldName): string {
  return JSON.stringify(c[f] ?? null);
}

/** The fields in which `entry` differs from `view` (the card as the owner sees it). */
export function editedFields(entry: Card, view: Card): FieldName[] {
  const a = normalizeCard(entry);
  const b = normalizeCard(view);
  return FIELD_NAMES.filter((f) => value(a, f) !== value(b, f));
}

/** The entry after the card changed to `view`: the owner's fields kept, every other field the card's. */
export function follow(entry: Card, view: Card, edited: readonly FieldName[]): Card {
  const mine = new Set(edited);
  const out: Record<string, unknown> = {};
  for (const f of FIELD_NAMES) {
    const src = mine.has(f) ? entry : view;
    if (src[f] !== undefined) out[f] = structuredClone(src[f]);
  }
  return normalizeCard(out as unknown as Card);
}

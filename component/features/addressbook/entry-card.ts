/** The card of a submitted `<entry/>` or `<answer/>` (any card format, `format` attribute), outside any unit of work. */
import type { Card, CardLimits } from "../../../stanzas/model/card.js";
import { childElements, type Element } from "../../../stanzas/xml.js";
import { checkRenderings, parseSubmitted } from "../cards/api.js";

/** The card of `el`, or undefined when it has none. */
export function entryCard(el: Element, limits: CardLimits): Card | undefined {
  if (childElements(el).length === 0 && el.getText().trim() === "") return undefined;
  const card = parseSubmitted(el, limits);
  checkRenderings(card, limits);
  return card;
}

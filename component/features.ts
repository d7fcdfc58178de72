/** The feature modules a production cardlink runs, in attach order. */
import { CardCommands } from "./card-commands.js";
import { Cards } from "./cards.js";
import type { Feature } from "./runtime/context.js";
import { Delivery } from "./delivery.js";
import { Exchange } from "./exchange.js";
import { PresenceTracker } from "./presence.js";
import { Push } from "./push.js";

export function allFeatures(): Feature[] {
  const presence = new PresenceTracker();
  const delivery = new Delivery(presence);
  const cards = new Cards(delivery);
  const exchange = new Exchange(delivery);
  return [presence, delivery, cards, exchange, new CardCommands(cards, exchange), new Push()];
}

/** The feature modules a production cardlink runs, in attach order. */
import { Cards } from "./cards.js";
import type { Feature } from "./context.js";
import { Delivery } from "./delivery.js";
import { Exchange } from "./exchange.js";
import { PresenceTracker } from "./presence.js";

export function allFeatures(): Feature[] {
  const presence = new PresenceTracker();
  const delivery = new Delivery(presence);
  return [presence, delivery, new Cards(delivery), new Exchange(delivery)];
}

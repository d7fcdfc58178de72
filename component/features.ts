/** The feature modules a production cardlink runs, in attach order. */
import { AdminCommands } from "./admin-commands.js";
import { CardCommands } from "./card-commands.js";
import { Cards } from "./cards.js";
import type { Feature } from "./runtime/context.js";
import { Delivery } from "./delivery.js";
import { Exchange } from "./exchange.js";
import { PresenceTracker } from "./presence.js";
import { Push } from "./push.js";
import { UserData } from "./userdata.js";

// The `cardlink export-user` and `delete-user` commands (component/runtime/ctl.ts) work on the database alone;
// the composition root reaches them through this file, the one feature file it may import.
export { buildExport, deleteAccount, isEmptyExport } from "./userdata.js";

export function allFeatures(): Feature[] {
  const presence = new PresenceTracker();
  const delivery = new Delivery(presence);
  const cards = new Cards(delivery);
  const exchange = new Exchange(delivery);
  const push = new Push();
  const userData = new UserData();
  return [
    presence,
    delivery,
    cards,
    exchange,
    new CardCommands(cards, exchange),
    push,
    userData,
    new AdminCommands(userData, push),
  ];
}

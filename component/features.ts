/** The feature modules a production cardlink runs, in attach order. */
import { featureModules } from "./features/index.js";
import { cachedRead, LATENCY_BUCKETS, PROVIDER_BUCKETS } from "./runtime/metrics.js";
import type { FeatureModule } from "./runtime/context.js";
import { AdminCommands } from "./admin-commands.js";
import { CardCommands } from "./card-commands.js";
import { Cards } from "./cards.js";
import type { Feature } from "./runtime/context.js";
import { Delivery } from "./delivery.js";
import { Exchange } from "./exchange.js";
import { PresenceTracker } from "./presence.js";
import { Push } from "./push.js";
import { UserData } from "./userdata.js";
import { cards, eraseCardRows } from "./features/cards/index.js";
import { EXCHANGE_KINDS } from "./features/exchange/render.js";
import { BINDING_PATH } from "./features/exchange/repo.js";
import { eraseExchangeRows } from "./features/exchange/service.js";
import { erasePushRows } from "./features/push/index.js";
import type { OfflineWiring } from "./runtime/offline.js";
import { CARD_MIGRATIONS } from "./features/cards/migrations.js";
import { EXCHANGE_MIGRATIONS } from "./features/exchange/migrations.js";
import { PUSH_MIGRATIONS } from "./features/push/migrations.js";
import { SCHEMA_2000 } from "../storage/sqlite/schema-2000.js";

// The `cardlink export-user` and `delete-user` commands (component/runtime/ctl.ts) work on the database alone;
// the composition root reaches them through this file, the one feature file it may import.
export { buildExport, deleteAccount, isEmptyExport } from "./userdata.js";

// The same commands on a schema-2000 store (issue 8 S11): the new core's functions, and what an offline core
// (component/runtime/offline.ts) needs of the feature modules. The lead folds this into features/index.ts at
// the flip, when the legacy exports above go.
export {
  buildExport as buildExport2000,
  deleteAccount as deleteAccount2000,
  isEmptyExport as isEmptyExport2000,
} from "./features/userdata/export.js";

export { adminRepo } from "./features/admin/repo.js";

/**
 * Kinds, paths and `account.deleting` handlers of the feature modules, in feature-list order, and the newest
 * schema version they (with 2000's baseline) know: a database past it is refused.
 */
export function userDataWiring(): OfflineWiring & { knownVersion: number } {
  const versions = [SCHEMA_2000, ...CARD_MIGRATIONS, ...EXCHANGE_MIGRATIONS, ...PUSH_MIGRATIONS].map(
    (m) => m.version,
  );
  return {
    knownVersion: Math.max(...versions),
    kinds: [...(cards.kinds ?? []), ...EXCHANGE_KINDS],
    paths: [BINDING_PATH],
    onAccountDeleting: [eraseCardRows, eraseExchangeRows, erasePushRows],
  };
}

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

/**
 * The new core's module list (component/features/index.ts), with the push histograms' buckets filled in: what
 * createCardlink builds when the 2000 core runs (CARDLINK_CORE=2000 until the switch makes it the default).
 */
export function coreModules(o: { wakeKinds: () => readonly string[] }): FeatureModule[] {
  return featureModules({
    pushBuckets: { latency: LATENCY_BUCKETS, provider: PROVIDER_BUCKETS },
    wakeKinds: o.wakeKinds,
    cachedRead: (read) => cachedRead(read),
  });
}

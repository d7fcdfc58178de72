/** The feature modules a production cardlink runs, in attach order. */
import { featureModules } from "./features/index.js";
import { cachedRead, LATENCY_BUCKETS, PROVIDER_BUCKETS } from "./runtime/metrics.js";
import type { FeatureModule } from "./runtime/context.js";
import { cards, eraseCardRows } from "./features/cards/index.js";
import { EXCHANGE_KINDS } from "./features/exchange/render.js";
import { BINDING_PATH } from "./features/exchange/repo.js";
import { eraseExchangeRows } from "./features/exchange/service.js";
import { erasePushRows } from "./features/push/index.js";
import type { OfflineWiring } from "./runtime/offline.js";
import type { Migration } from "../storage/store.js";
import { CARD_MIGRATIONS } from "./features/cards/migrations.js";
import { EXCHANGE_MIGRATIONS } from "./features/exchange/migrations.js";
import { PUSH_MIGRATIONS } from "./features/push/migrations.js";
import { SCHEMA_2000 } from "../storage/sqlite/schema-2000.js";

// The `cardlink export-user` and `delete-user` commands (component/runtime/ctl.ts) work on the database alone,
// through an offline core (component/runtime/offline.ts); the composition root reaches the feature functions
// and what the offline core needs of the modules through this file, the one feature file it may import.
export { buildExport, deleteAccount, isEmptyExport } from "./features/userdata/export.js";

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

/** The feature modules' own migrations (versions above 2000), applied after the core's at start and by migrate. */
export function moduleMigrations(): Migration[] {
  return [...CARD_MIGRATIONS, ...EXCHANGE_MIGRATIONS, ...PUSH_MIGRATIONS];
}

/**
 * The core's module list (component/features/index.ts), with the push histograms' buckets filled in: what
 * `cardlink run` builds.
 */
export function coreModules(o: { wakeKinds: () => readonly string[] }): FeatureModule[] {
  return featureModules({
    pushBuckets: { latency: LATENCY_BUCKETS, provider: PROVIDER_BUCKETS },
    wakeKinds: o.wakeKinds,
    cachedRead: (read) => cachedRead(read),
  });
}

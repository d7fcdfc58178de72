/** The feature modules a production cardlink runs, in attach order. */
import { featureModules } from "./features/index.js";
import { cachedRead, LATENCY_BUCKETS, PROVIDER_BUCKETS } from "./runtime/metrics.js";
import type { FeatureModule } from "./runtime/context.js";
import type { OfflineWiring } from "./runtime/offline.js";
import type { Migration } from "../storage/store.js";
import { SCHEMA_2000 } from "../storage/sqlite/schema-2000.js";

// The `cardlink export-user` and `delete-user` commands (component/runtime/ctl.ts) work on the database alone,
// through an offline core (component/runtime/offline.ts); the composition root reaches the feature functions
// and what the offline core needs of the modules through this file, the one feature file it may import.
export { buildExport, deleteAccount, isEmptyExport } from "./features/userdata/export.js";

export { adminRepo } from "./features/admin/repo.js";
export { overrideMove } from "./features/identity/service.js";

/**
 * Kinds, paths and `account.deleting` handlers of the feature modules, in feature-list order, and the newest
 * schema version they (with 2000's baseline) know: a database past it is refused. Read off the module list, so a
 * feature added to features/index.ts is in the CLI's offline core without another line here.
 */
export function userDataWiring(): OfflineWiring & { knownVersion: number } {
  const modules = coreModules({ wakeKinds: () => [] });
  return {
    knownVersion: Math.max(SCHEMA_2000.version, ...moduleMigrations().map((m) => m.version)),
    kinds: modules.flatMap((m) => m.kinds ?? []),
    paths: modules.flatMap((m) => m.audiencePaths ?? []),
    onAccountDeleting: modules.flatMap((m) => (m.onAccountDeleting ? [m.onAccountDeleting] : [])),
  };
}

/** The feature modules' own migrations (versions above 2000), applied after the core's at start and by migrate. */
export function moduleMigrations(): Migration[] {
  return coreModules({ wakeKinds: () => [] }).flatMap((m) => m.migrations ?? []);
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

/**
 * The feature modules a production cardlink runs on the new core, in attach order (docs/REDESIGN.md §3.6): the
 * one file that knows every feature. Routes, kinds and commands register in this order, so the ad-hoc command
 * list reads as it always has: card commands, exchange commands, then the user's own data, then the admin's.
 */
import type { PushBuckets } from "./push/channel.js";
import type { FeatureModule } from "../runtime/context.js";
import { cardVersions } from "./cards/api.js";
import { cards } from "./cards/index.js";
import { devices } from "./devices/index.js";
import { groupsModule } from "./groups/index.js";
import { identityModule } from "./identity/index.js";
import { linkedModule } from "./linked/index.js";
import { exchangeModule } from "./exchange/index.js";
import { pushModule } from "./push/index.js";
import { adminModule } from "./admin/index.js";
import { addressbookModule } from "./addressbook/index.js";
import { userdataModule } from "./userdata/index.js";

export interface FeatureListOptions {
  /** The push histograms' buckets (runtime/metrics.ts values; a feature does not import the runtime's metrics). */
  pushBuckets: PushBuckets;
  /** Kinds that wake an offline device (the runtime's registry, filled from the modules' `kinds`). */
  wakeKinds: () => readonly string[];
  /** The metrics' scrape-time cache (runtime/metrics.ts cachedRead). */
  cachedRead: <T>(read: () => Promise<T>) => () => Promise<T>;
}

export function featureModules(o: FeatureListOptions): FeatureModule[] {
  return [
    cards,
    devices,
    exchangeModule({ cardVersions }),
    pushModule({ buckets: o.pushBuckets, wakeKinds: o.wakeKinds, cachedRead: o.cachedRead }),
    addressbookModule(),
    groupsModule(),
    identityModule(),
    linkedModule(),
    userdataModule(),
    adminModule(),
  ];
}

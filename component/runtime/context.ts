/** What every feature module receives: the shared services of one running cardlink. */
import type { UpdateFormat } from "../../stanzas/cardlink.js";
import type { Element } from "../../stanzas/xml.js";
import type { MigratedStore } from "../../storage/index.js";
import type { AccountId, Migration, Sql } from "../../storage/store.js";
import type { AccountsRead } from "./accounts/api.js";
import type { AdhocCommands } from "./adhoc.js";
import type { AudiencePath } from "./audience/api.js";
import type { StanzaBudget } from "./budget.js";
import type { Config, LimitsConfig } from "./config.js";
import type { EventBus, TxHandler } from "./events.js";
import type { IqCaller } from "./iq-caller.js";
import type { Logger } from "./log.js";
import type { Metrics } from "./metrics.js";
import type { JobChannel, Observer, QueueEngine, StreamKind } from "./queue/api.js";
import type { Router } from "./router.js";
import type { Reader, Uow } from "./uow.js";

export interface AppContext {
  config: Config;
  log: Logger;
  metrics: Metrics;
  /** The Store (units of work), migrated at open (storage/index.ts openCoreStore). */
  store: MigratedStore;
  router: Router;
  adhoc: AdhocCommands;
  events: EventBus;
  iq: IqCaller;
  /** The outgoing byte budget (link.stanzaLimitBytes): lists, pages and batches are cut to fit it. */
  budget: StanzaBudget;
  /** Sends a stanza if the link is up; false otherwise. */
  send(el: Element): Promise<boolean>;
  /** True while the link to Prosody is up. */
  online(): boolean;
  /** Set when the XEP-0357 app server is enabled (push configured). */
  pushAppServer?: boolean;
  /** disco#info features the new core's modules add (FeatureModule.discoFeatures), read per request. */
  moduleFeatures?: () => string[];
}

// ---------------------------------------------------------------------------------------------------------------
// The feature interface (docs/REDESIGN.md §3.6): the feature modules (component/features/<name>/) are written
// against these; AppContext above is what the composition root and the service module share.
// ---------------------------------------------------------------------------------------------------------------

/** §3.6 names `limits: Limits`: the fair branch's `limits` config section. */
export type Limits = LimitsConfig;

/**
 * §3.6 names `presence: PresenceView` without spelling it out: the in-memory view of available resources by
 * account that features read (push-scan skips lanes with a resource; the devices feature reads declarations).
 * Implemented by the new runtime/presence.ts (step S7), which may add read methods here.
 */
export interface PresenceView {
  /** Available full JIDs of the account, declared to a device or not; [] when none. */
  resources(account: AccountId): readonly string[];
  /** True while the account has at least one available resource (known to this process). */
  available(account: AccountId): boolean;
  /**
   * Of these accounts, those with an available resource known to any process: this process's memory, and with
   * several processes (queue.exclusive false) the `resources` rows every process writes, read in `tx`.
   */
  onlineAmong(tx: Sql, accounts: readonly AccountId[]): Promise<Set<AccountId>>;
  /**
   * `<active-device/>` from the full JID `full` of `bare` (S12, PROTOCOL §10.7): from now until it goes
   * unavailable, that resource is the user's registered device `deviceId` and is served by its cursor.
   * "no-device" (nothing changed) when the user has no such device. Call it before the handler's first await:
   * it is queued on the user's presence chain behind the request that recorded the resource. `format` 'vcf'
   * asks for the compact update form for that device (PROTOCOL §10.8); absent or 'vcard4': §10.1's form.
   */
  declare(
    bare: string,
    full: string,
    deviceId: string,
    format?: UpdateFormat,
  ): Promise<"declared" | "no-device">;
}

export interface Runtime {
  config: Config;
  log: Logger;
  metrics: Metrics;
  budget: StanzaBudget;
  limits: Limits;
  router: Router;
  adhoc: AdhocCommands;
  events: EventBus;
  iq: IqCaller;
  uow: Uow;
  read: Reader;
  accounts: AccountsRead;
  queue: QueueEngine;
  presence: PresenceView;
  send(el: Element): Promise<boolean>;
  online(): boolean;
}
export interface FeatureModule {
  readonly name: string;
  readonly migrations?: readonly Migration[]; // versions inside the module's range (§1.2)
  readonly kinds?: readonly StreamKind[];
  readonly channels?: readonly JobChannel[];
  readonly observers?: readonly Observer[];
  readonly audiencePaths?: readonly AudiencePath[];
  /**
   * Erases the module's rows of an account inside the deletion's unit of work (`account.deleting`). Declared here,
   * not registered in attach, so the CLI's link-less core (runtime/offline.ts) runs exactly the handlers the
   * running app does, from the same module list.
   */
  readonly onAccountDeleting?: TxHandler<"account.deleting">;
  /** disco#info features this module adds (evaluated per request: push depends on configured providers). */
  discoFeatures?(rt: Runtime): readonly string[];
  attach(rt: Runtime): void; // routes, ad-hoc commands, event handlers
  online?(): Promise<void>;
  stop?(): Promise<void>;
}

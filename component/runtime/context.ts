/** What every feature module receives: the shared services of one running cardlink. */
import type { Element } from "../../stanzas/xml.js";
import type { AppStore } from "../../storage/index.js";
import type { AdhocCommands } from "./adhoc.js";
import type { StanzaBudget } from "./budget.js";
import type { Config } from "./config.js";
import type { EventBus } from "./events.js";
import type { IqCaller } from "./iq-caller.js";
import type { Logger } from "./log.js";
import type { Metrics } from "./metrics.js";
import type { Router } from "./router.js";

export interface AppContext {
  config: Config;
  log: Logger;
  metrics: Metrics;
  /** The new Store (units of work) and the old repositories on one backend (storage/index.ts). */
  store: AppStore;
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
}

/** A feature registers routes, commands and listeners in attach(); start/stop run with the link's lifecycle. */
export interface Feature {
  name: string;
  attach(app: AppContext): void;
  /** Called on every (re)connection to Prosody. */
  online?(): void | Promise<void>;
  stop?(): void | Promise<void>;
}

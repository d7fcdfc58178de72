/**
 * A unit-of-work core without a link, for the commands that work on the database alone (`cardlink export-user`,
 * `delete-user` on a schema-2000 store; component/runtime/ctl.ts): the real accounts, stream and audience parts
 * over the store, the features' stream kinds and audience paths, and their in-tx `account.deleting` handlers.
 * The jobs half is not wired: none of these commands enqueues a job (deletion removes the account's jobs by SQL),
 * and one that tried would fail its unit of work rather than write a job no engine was told about.
 *
 * Post-commit listeners run as in the service, but nothing listens: a deletion's `queue.appended` kicks no engine
 * (the holders' `unbound` entries wait in the stream for the service's next claim of their lanes).
 */
import type { Store } from "../../storage/store.js";
import { accountsParts } from "./accounts/tx.js";
import type { AudiencePath } from "./audience/api.js";
import { audienceParts } from "./audience/tx.js";
import { EventBus, type TxHandler } from "./events.js";
import type { StreamKind } from "./queue/api.js";
import { streamTx } from "./queue/stream-tx.js";
import { makeReader, makeUow, type Reader, type Uow } from "./uow.js";

/** What the feature list contributes (component/features.ts userDataWiring()). */
export interface OfflineWiring {
  readonly kinds: readonly StreamKind[];
  readonly paths: readonly AudiencePath[];
  /** In feature-list order, as the running app's attach registers them. */
  readonly onAccountDeleting: readonly TxHandler<"account.deleting">[];
}

export interface OfflineCore {
  uow: Uow;
  read: Reader;
  events: EventBus;
}

export function offlineCore(store: Pick<Store, "tx" | "read">, w: OfflineWiring): OfflineCore {
  const events = new EventBus();
  // A short-lived process: the cache only saves repeated lookups within one command.
  const accounts = accountsParts({ cacheSize: 1000, cacheTtlMs: 60_000, events });
  const audience = audienceParts({ paths: w.paths });
  const kinds = new Map(w.kinds.map((k) => [k.name, k]));
  for (const h of w.onAccountDeleting) events.onTx("account.deleting", h);
  const noJobs = (): never => {
    throw new Error("offline core: no job channel is wired (this command must not enqueue jobs)");
  };
  const uow = makeUow(
    store,
    {
      accounts: accounts.tx,
      stream: streamTx({ kind: (n) => kinds.get(n), paths: w.paths }),
      jobs: noJobs,
      audience: audience.tx,
    },
    events,
  );
  const read = makeReader(store, { accounts: accounts.read, audience: audience.read });
  return { uow, read, events };
}

/**
 * The runtime parts the linked-accounts feature needs, over any Store (the unit tests' SQLite files, the contract
 * suite's throwaway PostgreSQL): the offline core's accounts, stream (every module's kinds) and audience parts
 * plus the jobs half of the queue with the two channels the feature enqueues to registered by name (no loop runs:
 * the tests read the job rows), and a LinkedService with small caps and a pinned clock.
 */
import { EventBus } from "../../component/runtime/events.js";
import { accountsParts } from "../../component/runtime/accounts/tx.js";
import { audienceParts } from "../../component/runtime/audience/tx.js";
import type { JobChannel } from "../../component/runtime/queue/api.js";
import { jobsTx } from "../../component/runtime/queue/jobs-tx.js";
import { streamTx } from "../../component/runtime/queue/stream-tx.js";
import { RateLimiter } from "../../component/runtime/ratelimit.js";
import { makeReader, makeUow, type Reader, type Uow } from "../../component/runtime/uow.js";
import { WEBHOOK_CHANNEL } from "../../component/runtime/webhooks/api.js";
import {
  LINKED_CHANNEL,
  LinkedService,
  type LinkedOptions,
} from "../../component/features/linked/service.js";
import { userDataWiring } from "../../component/features.js";
import type { Store } from "../../storage/store.js";
import type { Setting } from "../../stanzas/linked.js";

export interface LinkedWorld {
  uow: Uow;
  read: Reader;
  events: EventBus;
  svc: LinkedService;
}

const named = (name: string): JobChannel => ({
  name,
  concurrency: 1,
  maxAttempts: 1,
  backoff: { baseMs: 1, maxMs: 1 },
  onExhausted: "drop",
  send: () => Promise.reject(new Error("no loop runs in these tests")),
});

export function linkedWorld(
  store: Store,
  o: Partial<LinkedOptions> = {},
  now = () => Date.now(),
): LinkedWorld {
  const w = userDataWiring();
  const events = new EventBus();
  const accounts = accountsParts({ cacheSize: 1000, cacheTtlMs: 60_000, events });
  const audience = audienceParts({ paths: w.paths });
  const kinds = new Map(w.kinds.map((k) => [k.name, k]));
  for (const h of w.onAccountDeleting) events.onTx("account.deleting", h);
  const channels = new Map([WEBHOOK_CHANNEL, LINKED_CHANNEL].map((n) => [n, named(n)]));
  const uow = makeUow(
    store,
    {
      accounts: accounts.tx,
      stream: streamTx({ kind: (n) => kinds.get(n), paths: w.paths }),
      jobs: jobsTx({ channel: (n) => channels.get(n) }),
      audience: audience.tx,
    },
    events,
  );
  const read = makeReader(store, { accounts: accounts.read, audience: audience.read });
  const svc = new LinkedService({
    uow,
    read,
    servedHosts: ["a.example", "b.example"],
    services: new Map<string, readonly Setting[]>([
      ["chat", ["nickname", "avatar"]],
      ["mail", ["nickname", "avatar", "status"]],
    ]),
    maxAccounts: 4,
    pendingPerUser: 3,
    requestTtlMs: 86_400_000,
    codeTtlMs: 600_000,
    codeFailures: new RateLimiter({ limit: 3, windowMs: 900_000, maxKeys: 1000, now }),
    maxNicknameLength: 20,
    maxStatusLength: 40,
    maxAvatarBytes: 200,
    ...o,
  });
  return { uow, read, events, svc };
}

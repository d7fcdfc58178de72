/**
 * A runtime with only the given job channels registered (docs/REDESIGN.md §4.7): what replaces
 * `new PushDispatcher(store, senders, opts, log, metrics)` in the deleted test/push/dispatcher.test.ts once features/push
 * (S8) builds the push channel. A temp SqliteStore with schema 2000 (or the caller's file), the real accounts
 * part, jobsTx over the registered channels, and the real queue engine (heartbeat, leases, one JobLoop per
 * channel, post-commit kicks), started: a job enqueued through `uow` is claimed and sent by the channel, and
 * test/harness/inspect.ts reads what is left. No stream kinds, observers or audience paths: a test of a channel
 * sees only its channel.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { accountsParts } from "../../component/runtime/accounts/tx.js";
import { defaultConfig } from "../../component/runtime/config.js";
import { EventBus } from "../../component/runtime/events.js";
import type { JobChannel } from "../../component/runtime/queue/api.js";
import { Engine, type EngineConfig } from "../../component/runtime/queue/engine.js";
import type { LoopEvent } from "../../component/runtime/queue/jobs.js";
import { jobsTx } from "../../component/runtime/queue/jobs-tx.js";
import { makeUow, type Uow } from "../../component/runtime/uow.js";
import { SCHEMA_2000 } from "../../storage/sqlite/schema-2000.js";
import { SqliteStore } from "../../storage/sqlite/store.js";
import type { Store } from "../../storage/store.js";

export interface ChannelRuntime {
  store: Store;
  uow: Uow;
  engine: Engine;
  events: EventBus;
  /** Every loop event the channels reported (expired, deferred, exhausted, dead-letter, …), in order. */
  jobEvents: Array<{ channel: string; event: LoopEvent; n: number }>;
  /** Stops the engine, closes the store, and removes the temp directory if this runtime made it. */
  close(): Promise<void>;
}

export interface ChannelRuntimeOptions {
  channels: readonly JobChannel[];
  /** An existing database file (migrated to 2000 here if it is new); default a fresh temp file. */
  file?: string;
  /** Engine timing; default the config defaults, so a test that needs fast polls says so. */
  config?: Partial<EngineConfig>;
  clock?: () => number;
  random?: () => number;
}

export async function channelRuntime(o: ChannelRuntimeOptions): Promise<ChannelRuntime> {
  const made = o.file === undefined ? mkdtempSync(path.join(os.tmpdir(), "cardlink-channels-")) : undefined;
  const file = o.file ?? path.join(made as string, "store.sqlite");
  const store = new SqliteStore(file, { legacy: false, ...(o.clock ? { clock: o.clock } : {}) });
  await store.migrate([SCHEMA_2000]);
  const events = new EventBus();
  const accounts = accountsParts({ cacheSize: 1000, cacheTtlMs: 60_000, events });
  const notHere = (part: string) => (): never => {
    throw new Error(`channelRuntime: the ${part} part is not registered (a channel-only runtime)`);
  };
  // The engine is built after uow (it needs it); jobsTx looks channels up through it at call time, after both.
  const uow = makeUow(
    store,
    {
      accounts: accounts.tx,
      stream: notHere("stream"),
      audience: notHere("audience"),
      jobs: jobsTx({ channel: (name) => engine.channel(name) }),
    },
    events,
  );
  const q = defaultConfig({}).queue;
  const jobEvents: ChannelRuntime["jobEvents"] = [];
  const engine = new Engine({
    store,
    uow,
    events,
    log: pino({ level: "silent" }),
    config: {
      leaseMs: q.leaseMs,
      heartbeatMs: q.heartbeatMs,
      exclusive: q.exclusive,
      observerPollMs: q.observerPollMs,
      pollMs: q.pollMs,
      deadLetterDays: q.deadLetterDays,
      ...o.config,
    },
    ...(o.clock ? { clock: o.clock } : {}),
    ...(o.random ? { random: o.random } : {}),
    onJobEvent: (channel, event, n) => jobEvents.push({ channel, event, n }),
  });
  for (const c of o.channels) engine.registerChannel(c);
  await engine.start();
  return {
    store,
    uow,
    engine,
    events,
    jobEvents,
    close: async () => {
      await engine.stop();
      await store.close();
      if (made !== undefined) rmSync(made, { recursive: true, force: true });
    },
  };
}

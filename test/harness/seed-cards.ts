/**
 * A cards world for unit tests of component/features/cards and devices (issue 8 S9): a temp SqliteStore with
 * schema 2000, the real runtime parts (accounts, the stream half of the queue with the `card` kind, audiences
 * with the binding path registered the way test/contract/audience.contract.ts does until exchange registers it),
 * and seeding helpers that write bindings as exchange will (binding + both shares rows + opened/closed).
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { cardKind, CardRenderCache } from "../../component/features/cards/render.js";
import type { BareJid } from "../../component/runtime/accounts/api.js";
import { accountsParts } from "../../component/runtime/accounts/tx.js";
import type { AudiencePath } from "../../component/runtime/audience/api.js";
import { audienceParts } from "../../component/runtime/audience/tx.js";
import { EventBus } from "../../component/runtime/events.js";
import type { StreamKind } from "../../component/runtime/queue/api.js";
import { streamTx } from "../../component/runtime/queue/stream-tx.js";
import { makeReader, makeUow, type Reader, type Uow } from "../../component/runtime/uow.js";
import type { SharePolicy } from "../../stanzas/model/policy.js";
import { SCHEMA_2000 } from "../../storage/sqlite/schema-2000.js";
import { SqliteStore } from "../../storage/sqlite/store.js";
import type { AccountId, Seq, Store } from "../../storage/store.js";

/** The binding path (features/exchange registers it at S10; audience.contract.ts declares it the same way). */
export const BINDING_PATH: AudiencePath = {
  name: "binding",
  from: "shares s",
  owner: "s.owner",
  holder: "s.holder",
  policy: "s.policy",
  seq: "s.seq",
};

export interface CardsWorld {
  store: Store;
  uow: Uow;
  read: Reader;
  events: EventBus;
  kind: StreamKind;
  cache: CardRenderCache;
  close(): Promise<void>;
}

export async function cardsWorld(): Promise<CardsWorld> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "cardlink-cards-"));
  const store = new SqliteStore(path.join(dir, "store.sqlite"), { legacy: false });
  await store.migrate([SCHEMA_2000]);
  const events = new EventBus();
  const cache = new CardRenderCache();
  const kind = cardKind(cache);
  const paths = [BINDING_PATH];
  const accounts = accountsParts({ cacheSize: 1000, cacheTtlMs: 60_000, events });
  const audience = audienceParts({ paths });
  const unused = (): never => {
    throw new Error("seed-cards: the jobs half is not used by cards");
  };
  const uow = makeUow(
    store,
    {
      accounts: accounts.tx,
      stream: streamTx({ kind: (n) => (n === "card" ? kind : undefined), paths }),
      jobs: unused,
      audience: audience.tx,
    },
    events,
  );
  const read = makeReader(store, { accounts: accounts.read, audience: audience.read });
  return {
    store,
    uow,
    read,
    events,
    kind,
    cache,
    close: async () => {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function account(w: CardsWorld, jid: BareJid): Promise<AccountId> {
  return w.uow("seed.account", (u) => u.accounts.ensure(jid, { seen: true }));
}

/** Binds a and b (both share everything unless a policy is given), as exchange's bind will: one seq for all. */
export async function bind(
  w: CardsWorld,
  a: BareJid,
  b: BareJid,
  o: { aPolicy?: SharePolicy | null; bPolicy?: SharePolicy | null } = {},
): Promise<Seq> {
  return bindMany(w, [[a, b, o]]);
}

/** Several bindings in one unit of work (one seq): what a group join looks like to sync. */
export async function bindMany(
  w: CardsWorld,
  pairs: ReadonlyArray<
    readonly [BareJid, BareJid, { aPolicy?: SharePolicy | null; bPolicy?: SharePolicy | null }?]
  >,
): Promise<Seq> {
  return w.uow("seed.bind", async (u) => {
    const seq = await u.seq();
    for (const [ja, jb, o = {}] of pairs) {
      const a = await u.accounts.ensure(ja);
      const b = await u.accounts.ensure(jb);
      const [lo, hi] = a < b ? [a, b] : [b, a];
      const id = `b-${lo}-${hi}`;
      await u.tx.run(
        `INSERT INTO bindings (id, a, b, a_devices, b_devices, via, created_at)
         VALUES (:id, :lo, :hi, '[]', '[]', 'code', :now)`,
        { id, lo, hi, now: u.now },
      );
      const share = (owner: AccountId, holder: AccountId, p: SharePolicy | null | undefined) =>
        u.tx.run(
          "INSERT INTO shares (owner, holder, binding_id, policy, seq) VALUES (:owner, :holder, :id, :policy, :seq)",
          { owner, holder, id, policy: p ? JSON.stringify(p) : null, seq },
        );
      await share(a, b, o.aPolicy);
      await share(b, a, o.bPolicy);
      await u.audience.opened(a, [b]);
      await u.audience.opened(b, [a]);
    }
    return seq;
  });
}

/** Unbinds a and b: the shares rows go, then closed() tombstones the pairs no other path shows. */
export async function unbind(w: CardsWorld, ja: BareJid, jb: BareJid): Promise<Seq> {
  return w.uow("seed.unbind", async (u) => {
    const a = await u.accounts.ensure(ja);
    const b = await u.accounts.ensure(jb);
    const [lo, hi] = a < b ? [a, b] : [b, a];
    await u.tx.run("DELETE FROM shares WHERE binding_id = :id", { id: `b-${lo}-${hi}` });
    await u.tx.run("DELETE FROM bindings WHERE id = :id", { id: `b-${lo}-${hi}` });
    await u.audience.closed([
      [a, b],
      [b, a],
    ]);
    return u.seq();
  });
}

/** Sets owner's policy towards holder (the `<share/>` request; exchange's at S10), at a new seq. */
export async function setShare(
  w: CardsWorld,
  owner: BareJid,
  holder: BareJid,
  policy: SharePolicy | null,
): Promise<Seq> {
  return w.uow("seed.share", async (u) => {
    const o = await u.accounts.ensure(owner);
    const h = await u.accounts.ensure(holder);
    const seq = await u.seq();
    await u.tx.run("UPDATE shares SET policy = :p, seq = :seq WHERE owner = :o AND holder = :h", {
      p: policy ? JSON.stringify(policy) : null,
      seq,
      o,
      h,
    });
    return seq;
  });
}

export interface LaneEntry {
  lane: number;
  kind: string;
  subject: string;
  seq: number;
}

/** Every stream entry, lane-ordered: what the fan-out wrote. */
export async function streamEntries(w: CardsWorld): Promise<LaneEntry[]> {
  return w.store.read("seed.entries", (r) =>
    r.all<LaneEntry>(
      "SELECT account_id AS lane, kind, subject, seq FROM stream_entries ORDER BY account_id, seq, ord",
    ),
  );
}

export async function currentSeq(w: CardsWorld): Promise<number> {
  const row = await w.store.read("seed.seq", (r) =>
    r.get<{ value: number }>("SELECT value FROM counters WHERE name = 'seq'"),
  );
  return Number(row?.value ?? 0);
}

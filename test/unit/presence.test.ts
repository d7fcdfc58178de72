/**
 * component/runtime/presence.ts (issue 8 S11): the presence keyed by account, on a temp SqliteStore with schema
 * 2000 and the real accounts part. Stanzas are fed through a stand-in for the Router's two listener hooks; what
 * cardlink sends is recorded. The rules are the old component/presence.ts's: the cap evicts the least recently
 * seen, a re-announced resource is `again`, unavailable from the bare JID clears all, restore after a restart
 * (oldest first, a lowered cap keeps the newest) probes subscribers that have something waiting, the
 * subscription replies, and gone().
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { pino } from "pino";
import { accountsParts } from "../../component/runtime/accounts/tx.js";
import { EventBus } from "../../component/runtime/events.js";
import { parseJid, type Jid } from "../../component/runtime/jid.js";
import { Metrics } from "../../component/runtime/metrics.js";
import { Presence } from "../../component/runtime/presence.js";
import type { StanzaListener } from "../../component/runtime/router.js";
import { makeReader, makeUow, type Reader, type Uow } from "../../component/runtime/uow.js";
import { activeDeviceElement } from "../../stanzas/cardlink.js";
import { NS } from "../../stanzas/ns.js";
import { xml, type Element } from "../../stanzas/xml.js";
import { SCHEMA_2000 } from "../../storage/sqlite/schema-2000.js";
import { PostgresStore } from "../../storage/postgres/store.js";
import { SqliteStore } from "../../storage/sqlite/store.js";
import type { AccountId, Store } from "../../storage/store.js";
import { PG_BIN, startPostgres, type PostgresServer } from "../harness/postgres.js";

const D = "localhost";
const ME = "cards.localhost";

/** Where a test's database lives, and how a "process" opens it (the same location again = a restart). */
interface Backend {
  fresh(): Promise<string>;
  open(where: string, clock: () => number): Store;
  cleanup(): Promise<void>;
}

interface World {
  store: Store;
  uow: Uow;
  read: Reader;
  presence: Presence;
  metrics: Metrics;
  sent: string[];
  availableCalls: Array<[AccountId, number, string, boolean]>;
  unavailableCalls: Array<[AccountId, string, boolean]>;
  /** onUnavailableTx calls, with whether the resource's row was already gone inside that unit of work. */
  unavailableTxCalls: Array<[AccountId, string, boolean, boolean]>;
  /** Log events (pino `event` fields) at info and above. */
  logged: string[];
  presenceIn(from: string, type?: string, child?: Element): Promise<void>;
  request(from: string): Promise<void>;
  id(bare: string): Promise<AccountId | undefined>;
  rows(): Promise<Array<{ full_jid: string; account_id: number }>>;
}

const notUsed = (part: string) => (): never => {
  throw new Error(`presence test: the ${part} part is not used`);
};

/** A store + uow + reader on `file` (a "process"), and a Presence attached to a router stand-in. */
async function world(b: Backend, where: string, cap: number, clock: () => number): Promise<World> {
  const store = b.open(where, clock);
  await store.migrate([SCHEMA_2000]);
  const events = new EventBus();
  const accounts = accountsParts({ cacheSize: 100, cacheTtlMs: 60_000, events });
  const uow = makeUow(
    store,
    {
      accounts: accounts.tx,
      stream: notUsed("stream"),
      jobs: notUsed("jobs"),
      audience: notUsed("audience"),
    },
    events,
  );
  const read = makeReader(store, { accounts: accounts.read, audience: notUsed("audience") });
  const metrics = new Metrics();
  const sent: string[] = [];
  const logged: string[] = [];
  const presence = new Presence({
    uow,
    read,
    send: async (el: Element) => {
      sent.push(el.toString());
      return true;
    },
    domain: ME,
    resourcesPerUser: cap,
    metrics,
    log: pino(
      { level: "info" },
      { write: (line: string) => logged.push((JSON.parse(line) as { event?: string }).event ?? "") },
    ),
  });
  const availableCalls: World["availableCalls"] = [];
  const unavailableCalls: World["unavailableCalls"] = [];
  presence.onAvailable = (lane, consumer, full, again) => availableCalls.push([lane, consumer, full, again]);
  presence.onUnavailable = (lane, full, last) => unavailableCalls.push([lane, full, last]);
  const unavailableTxCalls: World["unavailableTxCalls"] = [];
  presence.onUnavailableTx = async (u, lane, full, last) => {
    const row = await u.tx.get("SELECT 1 AS x FROM resources WHERE full_jid = :full", { full });
    unavailableTxCalls.push([lane, full, last, row === undefined]);
  };
  const onPresence: StanzaListener[] = [];
  const onRequest: Array<(from: Jid) => void> = [];
  presence.attach({
    onPresence: (l) => onPresence.push(l),
    onRequest: (l) => onRequest.push(l),
  });
  const jid = (s: string): Jid => {
    const j = parseJid(s);
    if (!j) throw new Error(`bad jid ${s}`);
    return j;
  };
  return {
    store,
    uow,
    read,
    presence,
    metrics,
    sent,
    availableCalls,
    unavailableCalls,
    unavailableTxCalls,
    logged,
    // As the Router does: every listener awaited, in order, for one stanza.
    presenceIn: async (from, type, child) => {
      const stanza = xml("presence", { from, to: ME, type }, child ?? null);
      for (const l of onPresence) await l(stanza, jid(from));
    },
    request: async (from) => {
      for (const l of onRequest) l(jid(from));
      await presence.idle();
    },
    id: (bare) => read("t.resolve", (r) => r.accounts.resolve(bare)),
    rows: async () =>
      (
        await store.read("t.rows", (r) =>
          r.all<{ full_jid: string; account_id: number }>(
            "SELECT full_jid, account_id FROM resources ORDER BY since, full_jid",
          ),
        )
      ).map((x) => ({ full_jid: x.full_jid, account_id: Number(x.account_id) })),
  };
}

const sqlite = (): Backend => {
  const dirs: string[] = [];
  return {
    fresh: async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), "cardlink-presence-"));
      dirs.push(dir);
      return path.join(dir, "store.sqlite");
    },
    open: (file, clock) => new SqliteStore(file, { legacy: false, clock }),
    cleanup: async () => {
      for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
    },
  };
};

let server: PostgresServer | undefined;
const postgres = (): Backend => ({
  fresh: async () => (server ??= await startPostgres()).createDatabase(),
  open: (url, clock) => new PostgresStore({ clock, connection: { url, poolSize: 4 } }),
  cleanup: async () => {
    await server?.dropDatabases();
  },
});

describePresence("sqlite", sqlite());
// PostgreSQL where its binaries are (test/harness/postgres.ts), as test/contract/postgres.test.ts does.
if (process.env.CARDLINK_TEST_PG_URL || existsSync(path.join(PG_BIN, "postgres"))) {
  describePresence("postgres", postgres());
  after(async () => {
    await server?.stop();
    server = undefined;
  });
}

function describePresence(name: string, backend: Backend): void {
  describe(`runtime/presence (keyed by account) on ${name}`, function () {
    this.timeout(60_000);
    let where: string;
    let now: number;
    const clock = (): number => now;
    const open: World[] = [];
    const make = async (cap = 3): Promise<World> => {
      const w = await world(backend, where, cap, clock);
      open.push(w);
      return w;
    };

    beforeEach(async () => {
      where = await backend.fresh();
      now = 1_700_000_000_000;
    });
    afterEach(async () => {
      for (const w of open.splice(0)) await w.store.close();
      await backend.cleanup();
    });

    it("an available presence from a new user creates the account, tracks and persists the resource", async () => {
      const w = await make();
      await w.presenceIn(`alice@${D}/phone`);
      const a = await w.id(`alice@${D}`);
      expect(a).to.be.a("number");
      const id = a as AccountId;
      expect(w.presence.available(id)).to.equal(true);
      expect(w.presence.resources(id)).to.deep.equal([`alice@${D}/phone`]);
      expect(w.presence.resources(id, 0)).to.deep.equal([`alice@${D}/phone`]);
      expect(w.presence.resources(id, 7)).to.deep.equal([]);
      expect(w.presence.consumers(id)).to.deep.equal([0]);
      expect(w.presence.lanes()).to.deep.equal([id]);
      expect(w.availableCalls).to.deep.equal([[id, 0, `alice@${D}/phone`, false]]);
      expect(await w.rows()).to.deep.equal([{ full_jid: `alice@${D}/phone`, account_id: id }]);
      expect(w.metrics.snapshot()["cardlink_users_available"]).to.equal(1);
      // The account is active (seen), not a placeholder.
      const acc = await w.store.read("t", (r) =>
        r.get<{ state: string; seen_at: number | null }>(
          "SELECT state, seen_at FROM accounts WHERE id = :id",
          {
            id,
          },
        ),
      );
      expect({ state: acc?.state, seen_at: Number(acc?.seen_at) }).to.deep.equal({
        state: "active",
        seen_at: now,
      });
      expect(w.sent).to.deep.equal([]);
    });

    it("a new resource of a placeholder account activates it (a presence is the JID acting)", async () => {
      const w = await make();
      const id = await w.uow("t.placeholder", (u) => u.accounts.ensure(`pat@${D}`));
      const state = async () =>
        (
          await w.store.read("t.state", (r) =>
            r.get<{ state: string }>("SELECT state FROM accounts WHERE id = :id", { id }),
          )
        )?.state;
      expect(await state()).to.equal("placeholder");
      await w.presenceIn(`pat@${D}/phone`);
      expect(w.presence.resources(id)).to.deep.equal([`pat@${D}/phone`]);
      expect(await state()).to.equal("active");
    });

    it("a presence without a resource, or from a server JID, tracks nothing", async () => {
      const w = await make();
      await w.presenceIn(`alice@${D}`);
      await w.presenceIn(`${D}/x`);
      await w.request(`${D}/x`);
      await w.request(`bob@${D}`);
      expect(w.presence.lanes()).to.deep.equal([]);
      expect(await w.id(`alice@${D}`)).to.equal(undefined);
      expect(await w.id(`bob@${D}`)).to.equal(undefined);
      expect(await w.rows()).to.deep.equal([]);
    });

    it("a presence from a known resource is `again` and writes nothing; a request from it only refreshes it", async () => {
      const w = await make();
      await w.presenceIn(`alice@${D}/phone`);
      const id = (await w.id(`alice@${D}`)) as AccountId;
      now += 1000;
      await w.presenceIn(`alice@${D}/phone`);
      await w.request(`alice@${D}/phone`);
      expect(w.availableCalls).to.deep.equal([
        [id, 0, `alice@${D}/phone`, false],
        [id, 0, `alice@${D}/phone`, true],
      ]);
      expect(w.presence.resources(id)).to.deep.equal([`alice@${D}/phone`]);
      expect(await w.rows()).to.have.length(1);
    });

    it("a request from a new full JID marks it available (not again)", async () => {
      const w = await make();
      await w.request(`carol@${D}/laptop`);
      const id = (await w.id(`carol@${D}`)) as AccountId;
      expect(w.presence.resources(id)).to.deep.equal([`carol@${D}/laptop`]);
      expect(w.availableCalls).to.deep.equal([[id, 0, `carol@${D}/laptop`, false]]);
      expect(await w.rows()).to.deep.equal([{ full_jid: `carol@${D}/laptop`, account_id: id }]);
    });

    it("the cap evicts the least recently seen resource (memory, row and metric)", async () => {
      const w = await make(2);
      await w.presenceIn(`alice@${D}/a`);
      await w.presenceIn(`alice@${D}/b`);
      // /a is seen again (a request): /b becomes the least recently seen.
      await w.request(`alice@${D}/a`);
      await w.presenceIn(`alice@${D}/c`);
      const id = (await w.id(`alice@${D}`)) as AccountId;
      expect(w.presence.resources(id)).to.deep.equal([`alice@${D}/a`, `alice@${D}/c`]);
      expect((await w.rows()).map((r) => r.full_jid).sort()).to.deep.equal([`alice@${D}/a`, `alice@${D}/c`]);
      expect(w.metrics.get("cardlink_presence_resources_evicted_total")).to.equal(1);
      // Another user's resources are their own.
      await w.presenceIn(`bob@${D}/x`);
      expect(w.presence.resources(id)).to.have.length(2);
      expect(w.metrics.snapshot()["cardlink_users_available"]).to.equal(2);
    });

    it("unavailable from a full JID drops that resource; from the bare JID, all of them", async () => {
      const w = await make();
      await w.presenceIn(`alice@${D}/a`);
      await w.presenceIn(`alice@${D}/b`);
      await w.presenceIn(`alice@${D}/c`);
      const id = (await w.id(`alice@${D}`)) as AccountId;
      await w.presenceIn(`alice@${D}/a`, "unavailable");
      expect(w.presence.resources(id)).to.deep.equal([`alice@${D}/b`, `alice@${D}/c`]);
      expect(w.unavailableCalls).to.deep.equal([[id, `alice@${D}/a`, false]]);
      await w.presenceIn(`alice@${D}`, "unavailable");
      expect(w.presence.available(id)).to.equal(false);
      expect(w.presence.resources(id)).to.deep.equal([]);
      expect(w.presence.consumers(id)).to.deep.equal([]);
      expect(w.presence.lanes()).to.deep.equal([]);
      expect(w.unavailableCalls.slice(1)).to.deep.equal([
        [id, `alice@${D}/b`, false],
        [id, `alice@${D}/c`, true],
      ]);
      expect(await w.rows()).to.deep.equal([]);
      expect(w.unavailableTxCalls).to.deep.equal([
        [id, `alice@${D}/a`, false, true],
        [id, `alice@${D}/b`, false, true],
        [id, `alice@${D}/c`, true, true],
      ]);
      expect(w.metrics.snapshot()["cardlink_users_available"]).to.equal(0);
      // Unavailable from a user without an account creates nothing.
      await w.presenceIn(`nobody@${D}/x`, "unavailable");
      expect(await w.id(`nobody@${D}`)).to.equal(undefined);
    });

    it("beforeLastGone is awaited before the unit of work of a last unavailable (not for an earlier one)", async () => {
      const w = await make();
      await w.presenceIn(`alice@${D}/a`);
      await w.presenceIn(`alice@${D}/b`);
      const id = (await w.id(`alice@${D}`)) as AccountId;
      const order: string[] = [];
      w.presence.beforeLastGone = async (lane) => {
        // Memory already forgot the resource (no new round can start for it); the row is still there.
        order.push(`before ${lane} available=${w.presence.available(lane)} rows=${(await w.rows()).length}`);
      };
      const tx = w.presence.onUnavailableTx;
      w.presence.onUnavailableTx = async (u, lane, full, last) => {
        order.push(`tx ${full} last=${last}`);
        await tx?.(u, lane, full, last);
      };
      await w.presenceIn(`alice@${D}/a`, "unavailable");
      await w.presenceIn(`alice@${D}/b`, "unavailable");
      expect(order).to.deep.equal([
        `tx alice@${D}/a last=false`,
        `before ${id} available=false rows=1`,
        `tx alice@${D}/b last=true`,
      ]);
    });

    it("a throwing onUnavailableTx rolls the row back; memory stays forgotten; no post-commit call", async () => {
      const w = await make();
      await w.presenceIn(`alice@${D}/a`);
      const id = (await w.id(`alice@${D}`)) as AccountId;
      w.presence.onUnavailableTx = async () => {
        throw new Error("announce failed");
      };
      let err: unknown;
      await w.presenceIn(`alice@${D}/a`, "unavailable").catch((e: unknown) => (err = e));
      expect((err as Error).message).to.equal("announce failed");
      expect(w.presence.available(id)).to.equal(false);
      expect(await w.rows()).to.deep.equal([{ full_jid: `alice@${D}/a`, account_id: id }]);
      expect(w.unavailableCalls).to.deep.equal([]);
    });

    it("gone() forgets the resource at once and deletes its row in the background", async () => {
      const w = await make();
      await w.presenceIn(`alice@${D}/a`);
      await w.presenceIn(`alice@${D}/b`);
      const id = (await w.id(`alice@${D}`)) as AccountId;
      w.presence.gone(id, `alice@${D}/a`);
      expect(w.presence.resources(id)).to.deep.equal([`alice@${D}/b`]);
      w.presence.gone(id, `alice@${D}/b`);
      expect(w.presence.available(id)).to.equal(false);
      expect(w.presence.lanes()).to.deep.equal([]);
      // The deletes run on the user's chain: idle() waits for them.
      await w.presence.idle();
      expect(await w.rows()).to.deep.equal([]);
      expect(w.unavailableCalls).to.deep.equal([]);
      expect(w.unavailableTxCalls).to.deep.equal([]);
    });

    it("a presence right after gone() brings the resource back, row included (the delete does not overtake it)", async () => {
      const w = await make();
      await w.presenceIn(`alice@${D}/a`);
      const id = (await w.id(`alice@${D}`)) as AccountId;
      w.presence.gone(id, `alice@${D}/a`);
      await w.presenceIn(`alice@${D}/a`);
      await w.presence.idle();
      expect(w.presence.resources(id)).to.deep.equal([`alice@${D}/a`]);
      expect(await w.rows()).to.deep.equal([{ full_jid: `alice@${D}/a`, account_id: id }]);
      expect(w.availableCalls.map((c) => c[3])).to.deep.equal([false, false]);
    });

    it("subscribe: recorded, answered subscribed + subscribe + available; unsubscribe answered unsubscribed", async () => {
      const w = await make();
      await w.presenceIn(`alice@${D}`, "subscribe");
      expect(w.sent).to.deep.equal([
        `<presence type="subscribed" to="alice@${D}" from="${ME}"/>`,
        `<presence type="subscribe" to="alice@${D}" from="${ME}"/>`,
        `<presence to="alice@${D}" from="${ME}"/>`,
      ]);
      const id = (await w.id(`alice@${D}`)) as AccountId;
      const subs = async () =>
        (
          await w.store.read("t.subs", (r) =>
            r.all<{ account_id: number }>("SELECT account_id FROM subscribers ORDER BY account_id"),
          )
        ).map((x) => ({ account_id: Number(x.account_id) }));
      expect(await subs()).to.deep.equal([{ account_id: id }]);
      w.sent.length = 0;
      await w.presenceIn(`alice@${D}`, "unsubscribe");
      expect(w.sent).to.deep.equal([`<presence type="unsubscribed" to="alice@${D}" from="${ME}"/>`]);
      expect(await subs()).to.deep.equal([]);
      // subscribed records silently; unsubscribed removes silently.
      w.sent.length = 0;
      await w.presenceIn(`bob@${D}`, "subscribed");
      const bob = (await w.id(`bob@${D}`)) as AccountId;
      expect(await subs()).to.deep.equal([{ account_id: bob }]);
      await w.presenceIn(`bob@${D}`, "unsubscribed");
      expect(await subs()).to.deep.equal([]);
      expect(w.sent).to.deep.equal([]);
      // probe: answered with cardlink's available presence, nothing recorded.
      await w.presenceIn(`carol@${D}/x`, "probe");
      expect(w.sent).to.deep.equal([`<presence to="carol@${D}" from="${ME}"/>`]);
      expect(await w.id(`carol@${D}`)).to.equal(undefined);
      // A server JID's subscription gets the same replies and no row.
      w.sent.length = 0;
      await w.presenceIn(D, "subscribe");
      expect(w.sent).to.have.length(3);
      expect(await subs()).to.deep.equal([]);
    });

    it("restore after a restart: rows oldest first, a lowered cap keeps the newest, waiting subscribers probed", async () => {
      const w1 = await make(3);
      await w1.presenceIn(`alice@${D}/a`);
      now += 10;
      await w1.presenceIn(`alice@${D}/b`);
      now += 10;
      await w1.presenceIn(`alice@${D}/c`);
      await w1.presenceIn(`bob@${D}/x`);
      // Subscribers: alice (something waiting in her stream), dave (nothing waiting: not probed).
      await w1.presenceIn(`alice@${D}`, "subscribe");
      await w1.presenceIn(`dave@${D}`, "subscribe");
      const alice = (await w1.id(`alice@${D}`)) as AccountId;
      const bob = (await w1.id(`bob@${D}`)) as AccountId;
      await w1.uow("t.entry", (u) =>
        u.tx.run(
          `INSERT INTO stream_entries (account_id, seq, ord, kind, subject, created_at)
         VALUES (:lane, 1, 0, 'card', 'x', :now)`,
          { lane: alice, now: u.now },
        ),
      );
      await w1.store.close();
      open.splice(open.indexOf(w1), 1);

      // The "restarted" process: a new store connection, directory and Presence, cap lowered to 2.
      const w2 = await make(2);
      expect(w2.presence.lanes()).to.deep.equal([]);
      await w2.presence.restore();
      expect(w2.presence.resources(alice)).to.deep.equal([`alice@${D}/b`, `alice@${D}/c`]);
      expect(w2.presence.resources(bob)).to.deep.equal([`bob@${D}/x`]);
      expect(w2.presence.lanes().sort((x, y) => x - y)).to.deep.equal([alice, bob].sort((x, y) => x - y));
      expect((await w2.rows()).map((r) => r.full_jid)).to.deep.equal([
        `alice@${D}/b`,
        `alice@${D}/c`,
        `bob@${D}/x`,
      ]);
      expect(w2.sent).to.deep.equal([`<presence type="probe" to="alice@${D}" from="${ME}"/>`]);
      // Restore announces nothing (the runtime kicks lanes()); the restored resources are known: `again`.
      expect(w2.availableCalls).to.deep.equal([]);
      await w2.presenceIn(`alice@${D}/c`);
      expect(w2.availableCalls).to.deep.equal([[alice, 0, `alice@${D}/c`, true]]);
      expect(w2.metrics.snapshot()["cardlink_users_available"]).to.equal(2);
    });

    // ---- <active-device/> (issue 8 S12, PROTOCOL §10.7)

    /** The account of `bare` with registered devices `ids` (platform other); returns the account and keys. */
    const withDevices = async (w: World, bare: string, ...ids: string[]) =>
      w.uow("t.devices", async (u) => {
        const account = await u.accounts.ensure(bare, { seen: true });
        const keys: number[] = [];
        for (const deviceId of ids) {
          const d = await u.accounts.upsertDevice(account, { deviceId, platform: "other" }, 20);
          if (d === "over-limit") throw new Error("over limit");
          keys.push(d.key);
        }
        return { account, keys };
      });
    const deviceRows = (w: World) =>
      w.store.read("t.device-rows", async (r) =>
        (
          await r.all<{ full_jid: string; device: number | null }>(
            "SELECT full_jid, device FROM resources ORDER BY full_jid",
          )
        ).map((x) => ({ full: x.full_jid, device: x.device === null ? null : Number(x.device) })),
      );
    const cursorsOf = (w: World, account: AccountId) =>
      w.store.read("t.cursors", async (r) =>
        (
          await r.all<{ consumer: number; pos: number; state: string }>(
            "SELECT consumer, pos, state FROM stream_cursors WHERE account_id = :a ORDER BY consumer",
            { a: account },
          )
        ).map((c) => ({ consumer: Number(c.consumer), pos: Number(c.pos), state: c.state })),
      );

    it("declared by IQ: the resource serves its device's cursor (made at the floor, row kept) until it goes unavailable", async () => {
      const w = await make();
      const { account: id, keys } = await withDevices(w, `alice@${D}`, "alice-phone", "alice-tab");
      const [phone] = keys as [number];
      const full = `alice@${D}/p`;
      await w.request(full);
      // An entry already waiting: the new device cursor starts below it (the floor), so it receives it.
      await w.uow("t.entry", (u) =>
        u.tx.run(
          `INSERT INTO stream_entries (account_id, seq, ord, kind, subject, created_at)
           VALUES (:lane, 5, 0, 'card', 'x', :now)`,
          { lane: id, now: u.now },
        ),
      );
      expect(await w.presence.declare(`alice@${D}`, full, "alice-phone")).to.equal("declared");
      expect(w.presence.resources(id, phone)).to.deep.equal([full]);
      expect(w.presence.resources(id, 0)).to.deep.equal([]);
      expect(w.presence.consumers(id)).to.deep.equal([phone]);
      expect(w.availableCalls).to.deep.equal([
        [id, 0, full, false],
        [id, phone, full, false],
      ]);
      expect(await deviceRows(w)).to.deep.equal([{ full, device: phone }]);
      expect(await cursorsOf(w, id)).to.deep.equal([
        { consumer: 0, pos: 0, state: "active" },
        { consumer: phone, pos: 4, state: "active" },
      ]);
      // Declaring the same device again changes nothing and announces nothing.
      expect(await w.presence.declare(`alice@${D}`, full, "alice-phone")).to.equal("declared");
      expect(w.availableCalls).to.have.length(2);
      // Unknown device: nothing changes.
      expect(await w.presence.declare(`alice@${D}`, full, "nope")).to.equal("no-device");
      expect(w.presence.consumers(id)).to.deep.equal([phone]);
      expect(await deviceRows(w)).to.deep.equal([{ full, device: phone }]);
      // Unavailable ends the declaration; the cursor stays (an offline device keeps its place in the lane).
      await w.presenceIn(full, "unavailable");
      await w.presenceIn(full);
      expect(w.presence.consumers(id)).to.deep.equal([0]);
      expect(await deviceRows(w)).to.deep.equal([{ full, device: null }]);
      expect((await cursorsOf(w, id)).map((c) => c.consumer)).to.deep.equal([0, phone]);
    });

    it("declared by a presence child: recorded and announced once, to the device's consumer; a bad child is logged and ignored", async () => {
      const w = await make(5);
      const { account: id, keys } = await withDevices(w, `alice@${D}`, "alice-tab");
      const [tab] = keys as [number];
      await w.presenceIn(`alice@${D}/t`, undefined, activeDeviceElement("alice-tab"));
      expect(w.availableCalls).to.deep.equal([[id, tab, `alice@${D}/t`, false]]);
      expect(await deviceRows(w)).to.deep.equal([{ full: `alice@${D}/t`, device: tab }]);
      // Presence gets no reply, whatever the child says.
      await w.presenceIn(`alice@${D}/u`, undefined, activeDeviceElement("nope"));
      await w.presenceIn(`alice@${D}/v`, undefined, xml("active-device", { xmlns: NS.CARDLINK }));
      await w.presenceIn(`alice@${D}/w`, undefined, xml("active-device", { xmlns: NS.CARDLINK, id: "a b" }));
      expect(w.sent).to.deep.equal([]);
      expect(w.logged.filter((e) => e === "active-device-ignored")).to.have.length(3);
      expect(w.presence.resources(id, 0)).to.deep.equal([`alice@${D}/u`, `alice@${D}/v`, `alice@${D}/w`]);
      expect(w.presence.resources(id, tab)).to.deep.equal([`alice@${D}/t`]);
      // A known resource re-announcing with the child: `again`, to the device's consumer.
      await w.presenceIn(`alice@${D}/t`, undefined, activeDeviceElement("alice-tab"));
      expect(w.availableCalls.at(-1)).to.deep.equal([id, tab, `alice@${D}/t`, true]);
      // A known undeclared resource declaring by presence moves to the device.
      await w.presenceIn(`alice@${D}/u`, undefined, activeDeviceElement("alice-tab"));
      expect(w.availableCalls.at(-1)).to.deep.equal([id, tab, `alice@${D}/u`, true]);
      expect(w.presence.resources(id, tab)).to.deep.equal([`alice@${D}/t`, `alice@${D}/u`]);
    });

    it("the compact form (§10.8) follows the device's latest declaration and ends with its last resource", async () => {
      const w = await make(5);
      const { account: id, keys } = await withDevices(w, `alice@${D}`, "alice-phone", "alice-tab");
      const [phone, tab] = keys as [number, number];
      const p1 = `alice@${D}/p1`;
      const p2 = `alice@${D}/p2`;
      await w.request(p1);
      expect(await w.presence.declare(`alice@${D}`, p1, "alice-phone", "vcf")).to.equal("declared");
      expect([
        w.presence.compact(id, phone),
        w.presence.compact(id, tab),
        w.presence.compact(id, 0),
      ]).to.deep.equal([true, false, false]);
      // A refused declaration (no such device) changes nothing.
      expect(await w.presence.declare(`alice@${D}`, p1, "nope", "vcard4")).to.equal("no-device");
      expect(w.presence.compact(id, phone)).to.equal(true);
      // The latest declaration of the device decides, from any of its resources; without format = vCard4.
      await w.request(p2);
      expect(await w.presence.declare(`alice@${D}`, p2, "alice-phone")).to.equal("declared");
      expect(w.presence.compact(id, phone)).to.equal(false);
      expect(await w.presence.declare(`alice@${D}`, p2, "alice-phone", "vcf")).to.equal("declared");
      expect(w.presence.compact(id, phone)).to.equal(true);
      // One resource of the device leaves: the other still declares it compact. The last one leaves: it ends.
      await w.presenceIn(p1, "unavailable");
      expect(w.presence.compact(id, phone)).to.equal(true);
      w.presence.gone(id, p2);
      expect(w.presence.compact(id, phone)).to.equal(false);
      // By a presence child, with the same rules (a bad format: ignored and logged, nothing declared).
      await w.presenceIn(
        `alice@${D}/t`,
        undefined,
        xml("active-device", { xmlns: NS.CARDLINK, id: "alice-tab", format: "vcf" }),
      );
      expect(w.presence.compact(id, tab)).to.equal(true);
      await w.presenceIn(
        `alice@${D}/u`,
        undefined,
        xml("active-device", { xmlns: NS.CARDLINK, id: "alice-phone", format: "xml" }),
      );
      expect(w.logged.filter((e) => e === "active-device-ignored")).to.have.length(1);
      expect(w.presence.resources(id, 0)).to.deep.equal([`alice@${D}/u`]);
      expect(w.presence.compact(id, phone)).to.equal(false);
      // Removing the device ends it; so does an unavailable from the bare JID.
      w.presence.undeclareDevice(id, tab);
      expect(w.presence.compact(id, tab)).to.equal(false);
      await w.presenceIn(
        `alice@${D}/t`,
        undefined,
        xml("active-device", { xmlns: NS.CARDLINK, id: "alice-tab", format: "vcf" }),
      );
      expect(w.presence.compact(id, tab)).to.equal(true);
      await w.presenceIn(`alice@${D}`, "unavailable");
      expect(w.presence.compact(id, tab)).to.equal(false);
    });

    it("a declaration is never applied after a later unavailable of the same resource", async () => {
      const w = await make();
      await withDevices(w, `erin@${D}`, "erin-1");
      const full = `erin@${D}/a`;
      // As the router orders them: onRequest, then the handler's declare, then the next stanza (unavailable).
      const [, r] = await Promise.all([
        w.request(full),
        w.presence.declare(`erin@${D}`, full, "erin-1"),
        w.presenceIn(full, "unavailable"),
      ]);
      expect(r).to.equal("declared");
      const id = (await w.id(`erin@${D}`)) as AccountId;
      expect(w.presence.available(id)).to.equal(false);
      expect(await w.rows()).to.deep.equal([]);
    });

    it("restore keeps declarations (a restart is not unavailable); a removed device's resources fall back to shared", async () => {
      const w1 = await make();
      const { account: id, keys } = await withDevices(w1, `alice@${D}`, "alice-phone");
      const [phone] = keys as [number];
      await w1.presenceIn(`alice@${D}/p`, undefined, activeDeviceElement("alice-phone"));
      await w1.presenceIn(`alice@${D}/d`);
      await w1.store.close();
      open.splice(open.indexOf(w1), 1);
      const w2 = await make();
      await w2.presence.restore();
      expect(w2.presence.resources(id, phone)).to.deep.equal([`alice@${D}/p`]);
      expect(w2.presence.resources(id, 0)).to.deep.equal([`alice@${D}/d`]);
      expect(await w2.uow("t.remove", (u) => u.accounts.removeDevice(id, "alice-phone"))).to.equal(true);
      // The foreign key set the row's device NULL; the runtime calls this after device.removed commits.
      expect(await deviceRows(w2)).to.deep.equal([
        { full: `alice@${D}/d`, device: null },
        { full: `alice@${D}/p`, device: null },
      ]);
      w2.presence.undeclareDevice(id, phone);
      expect(w2.presence.consumers(id)).to.deep.equal([0]);
      expect(w2.availableCalls).to.deep.equal([[id, 0, `alice@${D}/p`, false]]);
    });

    it("stanzas of one user apply in arrival order even when fired without waiting", async () => {
      const w = await make();
      // Not awaited one by one: the unavailable must not overtake the available (the account lookup is async).
      await Promise.all([w.presenceIn(`erin@${D}/a`), w.presenceIn(`erin@${D}/a`, "unavailable")]);
      const id = (await w.id(`erin@${D}`)) as AccountId;
      expect(w.presence.available(id)).to.equal(false);
      expect(await w.rows()).to.deep.equal([]);
    });
  });
}

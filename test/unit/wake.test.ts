/**
 * Cross-process wake-ups (issue 13, runtime/wake.ts): the NOTIFY payload rule, and the PostgreSQL store's LISTEN
 * connection (storage/postgres/listener.ts) on a throwaway cluster of its own — a notification sent inside a
 * unit of work arrives at COMMIT and never for a rollback, and after the server restarts the listener reconnects
 * by itself, LISTENs again and says so (onConnected(false): the caller re-scans), and notifications flow again.
 */
import { expect } from "chai";
import { pino } from "pino";
import type { AccountId } from "../../storage/store.js";
import { PostgresStore } from "../../storage/postgres/store.js";
import { WAKE_PAYLOAD_MAX, wakePayload } from "../../component/runtime/queue/stream-tx.js";
import { SCHEMA_2000 } from "../../storage/sqlite/schema-2000.js";
import { accountsParts } from "../../component/runtime/accounts/tx.js";
import { EventBus } from "../../component/runtime/events.js";
import { Metrics } from "../../component/runtime/metrics.js";
import { Presence } from "../../component/runtime/presence.js";
import { Router } from "../../component/runtime/router.js";
import { IqCaller } from "../../component/runtime/iq-caller.js";
import { createLogger } from "../../component/runtime/log.js";
import { NS } from "../../stanzas/ns.js";
import type { Element } from "../../stanzas/xml.js";
import { StoreBusyError, StoreOutcomeUnknownError } from "../../storage/errors.js";
import { parseJid } from "../../component/runtime/jid.js";
import { jobsTx } from "../../component/runtime/queue/jobs-tx.js";
import { streamTx } from "../../component/runtime/queue/stream-tx.js";
import { makeReader, makeUow } from "../../component/runtime/uow.js";
import { xml } from "../../stanzas/xml.js";
import { sleep, waitFor } from "../harness/ports.js";
import { startPostgres, type PostgresServer } from "../harness/postgres.js";

describe("wake-ups across processes (LISTEN/NOTIFY)", function () {
  this.timeout(120_000);

  it("the payload names the lanes, or '*' past pg_notify's size", () => {
    expect(wakePayload([1, 22, 333] as AccountId[])).to.equal("1,22,333");
    const many = Array.from({ length: 2000 }, (_, i) => (100_000 + i) as AccountId);
    expect(many.join(",").length).to.be.greaterThan(WAKE_PAYLOAD_MAX);
    expect(wakePayload(many)).to.equal("*");
  });

  it("router: storage failures answer wait (busy; outcome unknown), a bug cancel; unmatched replies reach the listener", async () => {
    const sent: Element[] = [];
    const router = new Router({
      domain: "cards.localhost",
      allowedDomains: ["localhost"],
      maxStanzaBytes: 256 * 1024,
      maxDepth: 32,
      log: createLogger("silent"),
      metrics: new Metrics(),
      send: (el) => {
        sent.push(el);
        return Promise.resolve(true);
      },
      iqCaller: new IqCaller(() => Promise.resolve(true), {
        timeoutMs: 1000,
        maxPending: 10,
        maxPendingPerRecipient: 5,
      }),
    });
    const failures: Record<string, Error> = {
      busy: new StoreBusyError("locked", "55P03"),
      unknown: new StoreOutcomeUnknownError("connection failed during COMMIT"),
      bug: new Error("a bug"),
    };
    router.iq("get", NS.PING, "ping", ({ stanza }) => {
      throw failures[stanza.attrs.id as string] as Error;
    });
    const unmatched: string[] = [];
    router.onUnmatchedReply((stanza, from) => {
      unmatched.push(`${stanza.attrs.type} ${stanza.attrs.id} ${from.full}`);
    });
    for (const id of Object.keys(failures)) {
      router.handle(
        xml(
          "iq",
          { type: "get", id, from: "alice@localhost/r", to: "cards.localhost" },
          xml("ping", { xmlns: NS.PING }),
        ),
      );
    }
    router.handle(
      xml("iq", { type: "result", id: "cls-0123abcd-1", from: "bob@localhost/p", to: "cards.localhost" }),
    );
    await router.drain(5000);
    await sleep(10);
    const answer = (id: string) => {
      const e = sent.find((x) => x.attrs.id === id)?.getChild("error");
      return [e?.attrs.type, e?.getChildText("text")];
    };
    expect(answer("busy")).to.deep.equal(["wait", "storage is busy; retry shortly"]);
    expect(answer("unknown")).to.deep.equal([
      "wait",
      "the database connection failed while committing; the request may have been applied: retry it",
    ]);
    expect(answer("bug")[0]).to.equal("cancel");
    expect(unmatched).to.deep.equal(["result cls-0123abcd-1 bob@localhost/p"]);
  });

  describe("on PostgreSQL", () => {
    let pgs: PostgresServer;
    let store: PostgresStore;
    before(async () => {
      pgs = await startPostgres();
      const url = await pgs.createDatabase();
      store = new PostgresStore({ connection: { url, poolSize: 4 }, log: pino({ level: "silent" }) });
      await store.migrate([SCHEMA_2000]);
    });
    after(async () => {
      await store?.close();
      await pgs?.stop();
    });

    it("a notification arrives at COMMIT, not for a rollback; after a server restart the listener comes back", async () => {
      const got: string[] = [];
      const connected: boolean[] = [];
      const stop = store.listen("cardlink_wake_test", {
        onMessage: (p) => got.push(p),
        onConnected: (first) => connected.push(first),
      });
      await waitFor(() => connected.length === 1, "LISTEN", 10_000);
      expect(connected).to.deep.equal([true]);

      let sentBeforeCommit = -1;
      await store.tx("notify", async (tx) => {
        await tx.notify?.("cardlink_wake_test", "1,2");
        await sleep(200);
        sentBeforeCommit = got.length;
      });
      expect(sentBeforeCommit).to.equal(0);
      await waitFor(() => got.length === 1, "the committed notification", 5_000);
      expect(got).to.deep.equal(["1,2"]);

      const failed = await store
        .tx("notify-rollback", async (tx) => {
          await tx.notify?.("cardlink_wake_test", "3");
          throw new Error("refused");
        })
        .catch((e: Error) => e.message);
      expect(failed).to.equal("refused");

      await pgs.restart();
      await waitFor(() => connected.length === 2, "LISTEN again after the restart", 60_000);
      expect(connected).to.deep.equal([true, false]);
      // Retried: right after a restart the pool may still hand out a connection the server closed.
      await waitFor(
        async () => {
          await store.tx("notify-again", (tx) => tx.notify?.("cardlink_wake_test", "4") ?? Promise.resolve());
          return got.includes("4");
        },
        "a notification after the restart",
        30_000,
      );
      // "3" (rolled back) never arrived.
      expect(got.filter((p) => p !== "4")).to.deep.equal(["1,2"]);
      await stop();
    });

    it("presence rows: a silent process's resources are adopted once, the loser forgets them, a stop gives them back", async () => {
      const never = (): never => {
        throw new Error("part not used here");
      };
      const events = new EventBus();
      const accounts = accountsParts({ cacheSize: 100, cacheTtlMs: 60_000, events });
      const uow = makeUow(
        store,
        {
          accounts: accounts.tx,
          audience: never,
          stream: streamTx({ kind: () => undefined, paths: [] }),
          jobs: jobsTx({ channel: () => undefined }),
        },
        events,
      );
      const read = makeReader(store, { accounts: accounts.read, audience: never });
      const make = (me: string) => {
        const p = new Presence({
          uow,
          read,
          send: () => Promise.resolve(true),
          domain: "cards.localhost",
          resourcesPerUser: 5,
          metrics: new Metrics(),
          log: pino({ level: "silent" }),
          shared: { me, silentMs: 15_000 },
        });
        let onPresence:
          | ((el: ReturnType<typeof xml>, from: NonNullable<ReturnType<typeof parseJid>>) => unknown)
          | undefined;
        p.attach({
          onPresence: (l) => (onPresence = l),
          onRequest: () => undefined,
        } as Pick<Router, "onPresence" | "onRequest">);
        const available = async (full: string) => {
          await onPresence?.(xml("presence", { from: full, to: "cards.localhost" }), parseJid(full)!);
          await p.idle();
        };
        return { p, available };
      };
      const beat = (id: string, at: number) =>
        store.tx("beat", (tx) =>
          tx.run(
            `INSERT INTO processes (id, started_at, heartbeat_at) VALUES (:id, :at, :at)
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at`,
            { id, at },
          ),
        );
      const owner = () =>
        store.read("owner", (r) =>
          r.all<{ full_jid: string; process: string | null }>("SELECT full_jid, process FROM resources"),
        );
      const a = make("A");
      const b = make("B");
      await beat("A", Date.now());
      await beat("B", Date.now());
      await a.available("alice@localhost/phone");
      const alice = (await read("id", (r) => r.accounts.resolve("alice@localhost")))!;
      expect(a.p.resources(alice)).to.deep.equal(["alice@localhost/phone"]);
      expect(await owner()).to.deep.equal([{ full_jid: "alice@localhost/phone", process: "A" }]);
      // A is alive: nothing to adopt; the row tells B that alice is online (push-scan's view).
      expect(await b.p.adopt(Date.now() - 15_000)).to.deep.equal([]);
      expect([...(await store.tx("x", (tx) => b.p.onlineAmong(tx, [alice])))]).to.deep.equal([alice]);
      // A goes silent: B adopts; a second adoption finds nothing; A, reconciling, forgets alice.
      await beat("A", 0);
      expect(await b.p.adopt(Date.now() - 15_000)).to.deep.equal([alice]);
      expect(await b.p.adopt(Date.now() - 15_000)).to.deep.equal([]);
      expect(b.p.resources(alice)).to.deep.equal(["alice@localhost/phone"]);
      expect(await owner()).to.deep.equal([{ full_jid: "alice@localhost/phone", process: "B" }]);
      expect(await a.p.reconcile()).to.equal(1);
      expect(a.p.resources(alice)).to.deep.equal([]);
      expect(await b.p.reconcile()).to.equal(0);
      // B stops: its rows are given back, and A (alive again) adopts them at once.
      await beat("A", Date.now());
      expect(await b.p.handOver()).to.equal(1);
      expect(await owner()).to.deep.equal([{ full_jid: "alice@localhost/phone", process: null }]);
      expect(await a.p.adopt(Date.now() - 15_000)).to.deep.equal([alice]);
      expect(a.p.resources(alice)).to.deep.equal(["alice@localhost/phone"]);
    });
  });
});

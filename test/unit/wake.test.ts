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
  });
});

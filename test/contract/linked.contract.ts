/**
 * features/linked on both backends (issue 11): migration 3200's two texts and every statement of the feature's
 * repo — requests, accepts, service verification by code, a change fanned out to each kind of member (a job of
 * the linked-xmpp channel, a `linked-profile` stream entry, a webhook that a newer change replaces), the echo
 * guard, unlink deleting pending syncs, and account deletion dissolving a set — through the real LinkedService.
 */
import { expect } from "chai";
import { pino } from "pino";
import { deleteAccount, buildExport } from "../../component/features/userdata/export.js";
import { moduleMigrations } from "../../component/features.js";

import { SCHEMA_2000 } from "../../storage/sqlite/schema-2000.js";
import type { Store } from "../../storage/store.js";
import { linkedWorld, type LinkedWorld } from "../harness/linked-world.js";
import type { StoreFactory } from "./uow.contract.js";

const [A, B, E] = ["ann@a.example", "ben@b.example", "eve@x.example"];

export function describeLinked(name: string, factory: StoreFactory): void {
  describe(`Store contract: linked accounts (${name})`, function () {
    this.timeout(30_000);
    let store: Store;
    let w: LinkedWorld;
    const rows = <T extends object>(sql: string, p: Record<string, string | number> = {}): Promise<T[]> =>
      store.read("t.rows", (r) => r.all<T>(sql, p));
    const count = async (sql: string, p: Record<string, string | number> = {}): Promise<number> =>
      Number((await store.read("t.n", (r) => r.get<{ n: number }>(sql, p)))?.n);
    const codeFor = async (account: string): Promise<string> => {
      const [j] = await rows<{ body: string }>(
        "SELECT body FROM jobs WHERE kind = 'linked.verify' ORDER BY id DESC",
      );
      const data = (JSON.parse(j?.body ?? "{}") as { data: { account: string; code: string } }).data;
      expect(data.account).to.equal(account);
      return data.code;
    };

    beforeEach(async () => {
      store = await (await factory.create()).open({ log: pino({ level: "silent" }) });
      await store.migrate([SCHEMA_2000, ...moduleMigrations()]);
      w = linkedWorld(store);
    });
    afterEach(async () => {
      await store.close();
    });

    it("links, fans a change out to each kind of member, guards echoes, unlinks and erases", async () => {
      await w.svc.request(A, B, ["nickname", "avatar", "status"]);
      await w.svc.accept(B, A, ["nickname", "status"]);
      await w.svc.request(A, E, ["nickname"]);
      await w.svc.accept(E, A, ["nickname"]);
      await w.svc.linkService(A, "chat", "ann", ["nickname"]);
      await w.svc.confirm(A, "chat", "ann", await codeFor("ann"));
      const view = await w.svc.list(B);
      expect(
        view.members.map((m) => ["jid" in m.ref ? m.ref.jid : m.ref.account, m.settings.join(" "), m.self]),
      ).to.deep.equal([
        [B, "nickname status", true],
        [A, "nickname avatar status", false],
        [E, "nickname", false],
        ["ann", "nickname", false],
      ]);
      expect(view.pending).to.deep.equal([]);

      const r = await w.svc.profileChanged(A, { jid: A }, { nickname: "Ann", status: "away" });
      expect(r).to.deep.equal({ targets: 3, ignored: [] });
      // ben (served host): one linked-xmpp job for the nickname, the status as a stream entry; eve (elsewhere):
      // a stream entry; ann on chat: one webhook with the current profile.
      const jobs = await rows<{ channel: string; kind: string; target: string; ckey: string; rev: number }>(
        "SELECT channel, kind, target, ckey, rev FROM jobs WHERE kind <> 'linked.verify' ORDER BY channel, id",
      );
      expect(jobs.map((j) => [j.channel, j.kind, j.ckey, Number(j.rev)])).to.deep.equal([
        ["linked-xmpp", "sync", "sync", 1],
        ["webhook", "linked.sync", jobs[1]?.ckey, 1],
      ]);
      const entries = await rows<{ kind: string; subject: string; jid: string }>(
        `SELECT e.kind, e.subject, i.value AS jid FROM stream_entries e JOIN identifiers i ON i.account_id = e.account_id
          WHERE e.kind = 'linked-profile' ORDER BY i.value, e.subject`,
      );
      expect(entries.map((e) => [e.jid, e.subject])).to.deep.equal([
        [B, "status"],
        [E, "nickname"],
      ]);
      // A newer change replaces the pending webhook (same row, same webhook-id), and the echo guard holds.
      await w.svc.profileChanged(A, { jid: A }, { nickname: "Annie" });
      expect(await count("SELECT COUNT(*) AS n FROM jobs WHERE kind = 'linked.sync'")).to.equal(1);
      expect(await count("SELECT MAX(rev) AS n FROM jobs WHERE kind = 'linked.sync'")).to.equal(2);
      expect(await w.svc.profileChanged(B, { jid: B }, { nickname: "Ann" })).to.deep.equal({
        targets: 0,
        ignored: ["nickname"],
      });
      expect(await w.svc.profileChanged(E, { jid: E }, { nickname: "Annie" })).to.deep.equal({
        targets: 0,
        ignored: ["nickname"],
      });

      // Unlinking the service account deletes its pending sync and tells the service.
      await w.svc.unlink(B, { service: "chat", account: "ann" });
      expect(await count("SELECT COUNT(*) AS n FROM jobs WHERE kind = 'linked.sync'")).to.equal(0);
      expect(await count("SELECT COUNT(*) AS n FROM jobs WHERE kind = 'linked.unlinked'")).to.equal(1);

      // Export covers the tables; a pending verification's code hash is redacted.
      await w.svc.linkService(A, "mail", "ann@mail", ["status"]);
      const doc = await buildExport(w.read, A);
      const tables = doc.tables as unknown as Record<string, Array<Record<string, unknown>>>;
      expect(tables.link_members?.length).to.equal(3);
      expect(tables.link_sets?.[0]?.nickname).to.equal("Annie");
      expect(tables.link_pending?.[0]?.code_hash).to.equal("(set, redacted)");

      // Deleting ann leaves ben and eve linked; deleting ben too dissolves the set (one account left).
      await deleteAccount(w.uow, A);
      expect(await count("SELECT COUNT(*) AS n FROM link_pending")).to.equal(0);
      expect((await w.svc.list(E)).members.map((m) => ("jid" in m.ref ? m.ref.jid : ""))).to.deep.equal([
        E,
        B,
      ]);
      expect(await count("SELECT COUNT(*) AS n FROM jobs WHERE channel = 'linked-xmpp'")).to.equal(1); // ben's
      await deleteAccount(w.uow, B);
      expect(await count("SELECT COUNT(*) AS n FROM link_sets")).to.equal(0);
      expect(await count("SELECT COUNT(*) AS n FROM link_members")).to.equal(0);
      expect(await count("SELECT COUNT(*) AS n FROM jobs WHERE channel = 'linked-xmpp'")).to.equal(0);
    });
  });
}

/**
 * The identity feature's SQL on both backends (component/features/identity/repo.ts; issue 12): every statement of
 * the repo against migration 2000 plus the address book's, the groups' and the identity migrations — the code
 * upsert and attempts, the identifier count with lapsing holds, hold/reactivate/delete, the data check a move runs on
 * the new JID's account, the move offer lookup and the capped history, service registrations with their
 * deduplication key, the update's items and their provider-call results, the re-sequencing of entries about a moved
 * account, the sweep, and CASCADE on account deletion.
 */
import { expect } from "chai";
import { BOOK_MIGRATIONS } from "../../component/features/addressbook/migrations.js";
import { GROUP_MIGRATIONS } from "../../component/features/groups/migrations.js";
import { IDENTITY_MIGRATIONS } from "../../component/features/identity/migrations.js";
import { MOVES_KEPT, identityRepo } from "../../component/features/identity/repo.js";
import type { AccountId, Migration, Store } from "../../storage/store.js";
import type { StoreFactory } from "./uow.contract.js";

const A = (n: number): AccountId => n as AccountId;
const T0 = 1_700_000_000_000;

export function describeIdentity(name: string, factory: StoreFactory, schema: readonly Migration[]): void {
  describe(`Store contract: the identity feature's SQL (${name})`, function () {
    this.timeout(60_000);
    let store: Store;

    beforeEach(async () => {
      store = await (await factory.create()).open({ clock: () => T0 });
      await store.migrate([...schema, ...BOOK_MIGRATIONS, ...GROUP_MIGRATIONS, ...IDENTITY_MIGRATIONS]);
      await store.tx("seed", async (tx) => {
        for (const id of [1, 2, 3]) {
          await tx.run("INSERT INTO accounts (id, state, created_at) VALUES (:id, 'active', :now)", {
            id,
            now: T0,
          });
          await tx.run(
            `INSERT INTO identifiers (kind, value, account_id, state, is_primary, created_at)
             VALUES ('jid', :v, :id, 'active', 1, :now)`,
            { v: `u${id}@example.org`, id, now: T0 },
          );
        }
      });
    });
    afterEach(async () => {
      await store.close();
    });
    after(() => factory.cleanup());

    const tx = <R>(fn: (r: ReturnType<typeof identityRepo>) => Promise<R>) =>
      store.tx("w", (t) => fn(identityRepo(t)));

    it("codes: upsert replaces, attempts are spent, other open codes are counted, expired ones swept", async () => {
      const code = { account: A(1), kind: "tel" as const, value: "+491701", purpose: "add" as const };
      await tx((r) => r.putCode({ ...code, codeHash: "h1", attemptsLeft: 3, expiresAt: T0 + 1000 }, T0));
      await tx((r) => r.putCode({ ...code, codeHash: "h2", attemptsLeft: 3, expiresAt: T0 + 2000 }, T0));
      await tx((r) => r.spendAttempt(A(1), "tel", "+491701", "add"));
      const c = await tx((r) => r.code(A(1), "tel", "+491701", "add"));
      expect(c).to.deep.equal({ ...code, codeHash: "h2", attemptsLeft: 2, expiresAt: T0 + 2000 });
      await tx((r) =>
        r.putCode(
          { ...code, value: "a@b.org", kind: "email", codeHash: "h", attemptsLeft: 1, expiresAt: T0 - 1 },
          T0,
        ),
      );
      expect(await tx((r) => r.countOtherOpenCodes(A(1), "tel", "+491701", "add", T0))).to.equal(0);
      expect(await tx((r) => r.countOtherOpenCodes(A(1), "email", "x@b.org", "add", T0))).to.equal(1);
      expect((await tx((r) => r.codesOf(A(1), T0))).map((x) => x.value)).to.deep.equal(["+491701"]);
      expect(await tx((r) => r.sweep(T0))).to.equal(1);
      await tx((r) => r.deleteCode(A(1), "tel", "+491701", "add"));
      expect(await tx((r) => r.code(A(1), "tel", "+491701", "add"))).to.equal(undefined);
    });

    it("identifiers: held ones count until they lapse; hold, reactivate, delete; lapsed holds swept", async () => {
      await store.tx("ids", async (t) => {
        await t.run(
          `INSERT INTO identifiers (kind, value, account_id, state, is_primary, created_at) VALUES
           ('tel', '+491', 1, 'active', 0, :now), ('tel', '+492', 1, 'active', 0, :now)`,
          { now: T0 },
        );
      });
      await tx((r) => r.hold(A(1), "tel", "+492", T0 + 10));
      expect(await tx((r) => r.countIdentifiers(A(1), T0))).to.equal(2);
      expect(await tx((r) => r.countIdentifiers(A(1), T0 + 10))).to.equal(1);
      await tx((r) => r.reactivate(A(1), "tel", "+492", T0));
      await tx((r) => r.hold(A(1), "tel", "+491", T0 + 5));
      expect(await tx((r) => r.sweep(T0 + 5))).to.equal(1);
      const left = await store.read("r", (r) =>
        r.all<{ value: string; state: string }>("SELECT value, state FROM identifiers WHERE kind = 'tel'"),
      );
      expect(left).to.deep.equal([{ value: "+492", state: "active" }]);
      await tx((r) => r.deleteIdentifier("tel", "+492"));
      expect(await tx((r) => r.countIdentifiers(A(1), T0))).to.equal(0);
    });

    it("hasData: an account with nothing is empty; a card, a binding, a membership or a service is data", async () => {
      expect(await tx((r) => r.hasData(A(2)))).to.equal(false);
      await store.tx("card", (t) =>
        t.run(
          "INSERT INTO cards (account_id, version, hash, card, seq, updated_at) VALUES (2, 1, 'h', '{}', 1, :now)",
          { now: T0 },
        ),
      );
      expect(await tx((r) => r.hasData(A(2)))).to.equal(true);
      expect(await tx((r) => r.hasData(A(3)))).to.equal(false);
      await tx((r) =>
        r.insertService(
          {
            id: "s0",
            account: A(3),
            kind: "jid",
            identifier: "u3@example.org",
            service: "S",
            provider: "",
            remark: "",
            receivedAt: T0,
          },
          T0,
        ),
      );
      expect(await tx((r) => r.hasData(A(3)))).to.equal(true);
    });

    it("moves: the offer is found only for its exact pair and until it expires; done history is capped", async () => {
      const m = {
        account: A(1),
        kind: "jid" as const,
        oldValue: "u1@example.org",
        newValue: "n@example.org",
      };
      await tx((r) => r.insertMove({ ...m, id: "m1", state: "offered", expiresAt: T0 + 100 }, T0));
      expect((await tx((r) => r.offerTo("u1@example.org", "n@example.org", T0)))?.id).to.equal("m1");
      expect(await tx((r) => r.offerTo("u2@example.org", "n@example.org", T0))).to.equal(undefined);
      expect(await tx((r) => r.offerTo("u1@example.org", "n@example.org", T0 + 100))).to.equal(undefined);
      expect((await tx((r) => r.openMoves(A(1), T0))).map((x) => x.id)).to.deep.equal(["m1"]);
      await tx((r) => r.deleteOpenMoves(A(1), "jid"));
      expect(await tx((r) => r.openMoves(A(1), T0))).to.deep.equal([]);
      for (let i = 0; i < MOVES_KEPT + 3; i++) {
        await tx(async (r) => {
          await r.insertMove(
            { ...m, id: `d${String(i).padStart(2, "0")}`, state: "offered", expiresAt: T0 + 100 },
            T0,
          );
          await r.finishMove(A(1), `d${String(i).padStart(2, "0")}`, i + 1, T0 + i);
        });
      }
      const done = await tx((r) => r.doneMoves(A(1)));
      expect(done).to.have.length(MOVES_KEPT);
      expect(done[0]).to.include({ id: `d${MOVES_KEPT + 2}`, state: "done", doneAt: T0 + MOVES_KEPT + 2 });
      expect(await tx((r) => r.move("d00"))).to.equal(undefined);
    });

    it("services: deduplicated by key, listed under an identifier, an update's items and their job results", async () => {
      const s = {
        account: A(1),
        kind: "tel" as const,
        identifier: "+491",
        provider: "p",
        remark: "r",
        receivedAt: T0,
      };
      await tx((r) => r.insertService({ ...s, id: "a", service: "A" }, T0));
      await tx((r) => r.insertService({ ...s, id: "b", service: "B" }, T0));
      let dup = false;
      try {
        await tx((r) => r.insertService({ ...s, id: "c", service: "A" }, T0));
      } catch {
        dup = true;
      }
      expect(dup).to.equal(true);
      expect(
        (
          await tx((r) =>
            r.serviceByKey(A(1), { kind: "tel", identifier: "+491", service: "A", provider: "p" }),
          )
        )?.id,
      ).to.equal("a");
      await tx((r) => r.refreshService("a", "payment", T0 + 5));
      expect(await tx((r) => r.countServices(A(1)))).to.equal(2);
      await tx((r) =>
        r.insertUpdate({ id: "u1", account: A(1), kind: "tel", oldValue: "+491", newValue: "+492" }, T0),
      );
      await tx((r) =>
        r.setService("a", { status: "selected", mode: "automatic", updateId: "u1", newIdentifier: "+492" }),
      );
      await tx((r) =>
        r.setService("b", {
          status: "manual",
          mode: "manual",
          updateId: "u1",
          newIdentifier: "+492",
          reason: "x",
        }),
      );
      expect((await tx((r) => r.servicesUnder(A(1), "tel", "+491"))).map((x) => x.id)).to.deep.equal([
        "a",
        "b",
      ]);
      // The provider call: a job row's uid links the item; its result is recorded by uid.
      const job = await store.tx("job", (t) =>
        t.get<{ id: number }>(
          `INSERT INTO jobs (channel, kind, target, body, uid, created_at) VALUES ('webhook', 'k', 't', '{}', 'uid-1', :now)
           RETURNING id`,
          { now: T0 },
        ),
      );
      await tx((r) => r.setJob("a", Number(job?.id)));
      expect((await tx((r) => r.serviceOfJob("uid-1")))?.id).to.equal("a");
      await tx((r) => r.setResult("a", "updated", null, 2));
      const a = await tx((r) => r.service(A(1), "a"));
      expect(a).to.include({ status: "updated", attempts: 2, remark: "payment", receivedAt: T0 + 5 });
      expect((await tx((r) => r.servicesUnder(A(1), "tel", "+491"))).map((x) => x.id)).to.deep.equal(["b"]);
      expect(await tx((r) => r.confirmUpdate(A(1), "u1", T0))).to.equal(true);
      expect(await tx((r) => r.confirmUpdate(A(1), "u1", T0))).to.equal(false);
      // A replaced unconfirmed update gives its items back.
      await tx((r) =>
        r.insertUpdate({ id: "u2", account: A(1), kind: "tel", oldValue: "+491", newValue: "+493" }, T0),
      );
      await tx((r) =>
        r.setService("b", { status: "manual", mode: "manual", updateId: "u2", newIdentifier: "+493" }),
      );
      expect((await tx((r) => r.openUpdates(A(1)))).map((u) => u.id)).to.deep.equal(["u2"]);
      await tx((r) => r.dropUpdate("u2"));
      expect(await tx((r) => r.service(A(1), "b"))).to.deep.include({ status: "registered", attempts: 0 });
      expect(await tx((r) => r.update(A(1), "u2"))).to.equal(undefined);
      expect(await tx((r) => r.deleteService(A(1), "b"))).to.equal(true);
      expect(await tx((r) => r.deleteService(A(2), "a"))).to.equal(false);
    });

    it("re-sequences pending entries about a moved account; account deletion cascades every table", async () => {
      await store.tx("entries", async (t) => {
        await t.run(
          `INSERT INTO stream_entries (account_id, seq, ord, kind, subject, subject_account, created_at) VALUES
           (2, 5, 0, 'unbound', '1', 1, :now), (3, 9, 0, 'unbound', '1', 1, :now), (2, 6, 0, 'binding', 'b', NULL, :now)`,
          { now: T0 },
        );
      });
      await tx((r) => r.resequenceAbout(A(1), 8));
      const seqs = await store.read("r", (r) =>
        r.all<{ account_id: number; seq: number }>(
          "SELECT account_id, seq FROM stream_entries ORDER BY account_id, seq",
        ),
      );
      expect(seqs.map((x) => [Number(x.account_id), Number(x.seq)])).to.deep.equal([
        [2, 6],
        [2, 8],
        [3, 9],
      ]);
      await tx(async (r) => {
        await r.putCode(
          {
            account: A(1),
            kind: "tel",
            value: "+4",
            purpose: "add",
            codeHash: "h",
            attemptsLeft: 1,
            expiresAt: T0 + 9,
          },
          T0,
        );
        await r.insertMove(
          {
            id: "m",
            account: A(1),
            kind: "jid",
            oldValue: "a",
            newValue: "b",
            state: "offered",
            expiresAt: T0 + 9,
          },
          T0,
        );
        await r.insertService(
          {
            id: "s",
            account: A(1),
            kind: "jid",
            identifier: "u1@example.org",
            service: "S",
            provider: "",
            remark: "",
            receivedAt: T0,
          },
          T0,
        );
        await r.insertUpdate({ id: "u", account: A(1), kind: "jid", oldValue: "a", newValue: "b" }, T0);
      });
      await store.tx("del", (t) => t.run("DELETE FROM accounts WHERE id = 1"));
      for (const table of ["identity_codes", "identity_moves", "service_registrations", "service_updates"]) {
        const n = await store.read("r", (r) => r.get<{ n: number }>(`SELECT COUNT(*) AS n FROM ${table}`));
        expect(Number(n?.n), table).to.equal(0);
      }
    });
  });
}

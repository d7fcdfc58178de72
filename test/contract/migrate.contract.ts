/**
 * The Store contract, migration part (docs/REDESIGN.md §4.5, cases 10–13), backend-neutral like uow.contract.ts.
 */
import { expect } from "chai";
import { flattenModules, type MigrationModule } from "../../storage/migrate.js";
import { LEGACY } from "../../storage/sqlite/legacy.js";
import { accountsModule } from "../../storage/sqlite/rekey-2000.js";
import type { Migration, Store } from "../../storage/store.js";
import type { StoreBackend, StoreFactory } from "./uow.contract.js";

const both = (sql: string) => ({ sqlite: sql, postgres: sql });
const m = (version: number, sql: string): Migration => ({ version, name: `m${version}`, sql: both(sql) });

const V1 = m(1, "CREATE TABLE a (x INTEGER NOT NULL)");
const V2 = m(2, "CREATE TABLE b (x INTEGER NOT NULL)");
const V3 = m(3, "CREATE TABLE c (x INTEGER NOT NULL)");

async function tables(s: Store, names: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const n of names) {
    // Portable existence check: a SELECT on a missing table fails on both backends.
    const ok = await s
      .read("probe", (t) => t.get(`SELECT COUNT(*) AS n FROM ${n}`))
      .then(
        () => true,
        () => false,
      );
    if (ok) out.push(n);
  }
  return out;
}

export function describeMigrations(name: string, factory: StoreFactory): void {
  describe(`Store contract: migrations (${name})`, function () {
    this.timeout(30_000);
    let backend: StoreBackend;
    const opened: Store[] = [];
    const open = async () => {
      const s = await backend.open();
      opened.push(s);
      return s;
    };
    beforeEach(async () => {
      backend = await factory.create();
    });
    afterEach(async () => {
      for (const s of opened.splice(0)) await s.close();
    });
    after(() => factory.cleanup());

    it("10. a fresh database reaches the newest version; reopening applies nothing", async () => {
      const s = await open();
      expect(await s.schemaVersion()).to.equal(0);
      expect(await s.migrate([V2, V1, V3])).to.deep.equal({ applied: [1, 2, 3], current: 3, pending: [] });
      expect(await s.schemaVersion()).to.equal(3);
      expect(await tables(s, ["a", "b", "c"])).to.deep.equal(["a", "b", "c"]);
      await s.close();
      const again = await open();
      expect(await again.migrate([V1, V2, V3])).to.deep.equal({ applied: [], current: 3, pending: [] });
    });

    it("11. a database with a newer version is refused before anything is applied", async () => {
      const s = await open();
      await s.migrate([V1, V3]);
      // An older cardlink knows 1 and 2 only: 2 is pending, but the database is at 3.
      const err = await s.migrate([V1, V2]).catch((e: unknown) => e);
      expect((err as Error).message).to.match(/schema version 3 is newer than this cardlink \(2\)/);
      expect(await tables(s, ["b"])).to.deep.equal([]);
      expect(await s.schemaVersion()).to.equal(3);
    });

    it("12. dryRun lists pending versions and writes nothing; a failing migration leaves the previous version", async () => {
      const s = await open();
      await s.migrate([V1]);
      expect(await s.migrate([V1, V2, V3], { dryRun: true })).to.deep.equal({
        applied: [],
        current: 1,
        pending: [2, 3],
      });
      expect(await tables(s, ["b", "c"])).to.deep.equal([]);
      expect(await s.schemaVersion()).to.equal(1);
      const broken = m(2, "CREATE TABLE b (x INTEGER NOT NULL); INSERT INTO nowhere VALUES (1)");
      const err = await s.migrate([V1, broken, V3]).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(Error);
      expect(await s.schemaVersion()).to.equal(1);
      expect(await tables(s, ["b", "c"]), "the failed migration's DDL rolled back too").to.deep.equal([]);
      // A check() post-condition that fails rolls its migration back the same way.
      const checked: Migration = {
        ...V2,
        check: async (tx) => {
          const r = await tx.get<{ n: number }>("SELECT COUNT(*) AS n FROM b");
          if (Number(r?.n) !== 1) throw new Error("b must hold one row");
        },
      };
      const failed = (await s.migrate([V1, checked]).catch((e: unknown) => e)) as Error;
      expect(failed.message).to.match(/one row/);
      expect(await s.schemaVersion()).to.equal(1);
    });

    it("13. module ranges are disjoint and versions ascending (static check, and the real modules pass it)", () => {
      const mod = (n: string, range: [number, number], ms: Migration[]): MigrationModule => ({
        name: n,
        range,
        migrations: ms,
      });
      expect(
        flattenModules([mod("b", [100, 199], [m(100, ""), m(150, "")]), mod("a", [1, 99], [V1])]).map(
          (x) => x.version,
        ),
      ).to.deep.equal([1, 100, 150]);
      expect(() => flattenModules([mod("a", [1, 100], []), mod("b", [100, 199], [])])).to.throw(/overlap/);
      expect(() => flattenModules([mod("a", [1, 99], [m(120, "")])])).to.throw(/outside a's range/);
      expect(() => flattenModules([mod("a", [1, 99], [V2, V1])])).to.throw(/not ascending/);
      expect(flattenModules([LEGACY]).map((x) => x.version)).to.deep.equal([1, 100, 200, 300]);
      // The accounts module beside it (both of its choices: the rekey for a legacy database, the fresh DDL).
      for (const version of [0, 300]) {
        expect(flattenModules([LEGACY, accountsModule({ version })]).map((x) => x.version)).to.deep.equal([
          1, 100, 200, 300, 2000,
        ]);
      }
    });
  });
}

/**
 * `cardlink move-identifier` (issue 12, PROTOCOL §23.4): the operator override of a phone number move, on the
 * database alone — the old number held for identity.cooldownSeconds, the new one kept, the move recorded done; a
 * move to a number the user has not proven, or of an unknown user, is refused and changes nothing; usage errors.
 */
import { expect } from "chai";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { moduleMigrations } from "../../component/features.js";
import { cli, type Io } from "../../component/runtime/ctl.js";
import { SCHEMA_2000 } from "../../storage/sqlite/schema-2000.js";
import { SqliteStore } from "../../storage/sqlite/store.js";

const A = "alice@a.example";

describe("cardlink move-identifier (operator override of a phone move)", () => {
  let dir = "";
  let file = "";
  let out: string[] = [];
  let err: string[] = [];
  const io: Io = { out: (l) => out.push(l), err: (l) => err.push(l) };
  const saved = { ...process.env };

  beforeEach(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "cardlink-ctl-move-"));
    file = path.join(dir, "store.sqlite");
    const store = new SqliteStore(file, { legacy: false });
    await store.migrate([SCHEMA_2000, ...moduleMigrations()]);
    await store.tx("seed", async (tx) => {
      await tx.run("INSERT INTO accounts (id, state, created_at) VALUES (1, 'active', 1)");
      await tx.run(
        `INSERT INTO identifiers (kind, value, account_id, state, is_primary, created_at) VALUES
         ('jid', :a, 1, 'active', 1, 1), ('tel', '+441632960010', 1, 'active', 0, 1),
         ('tel', '+441632960011', 1, 'active', 0, 1)`,
        { a: A },
      );
    });
    await store.close();
    out = [];
    err = [];
    process.env.CARDLINK_SECRET = "s";
    process.env.CARDLINK_DB = file;
  });
  afterEach(() => {
    for (const k of ["CARDLINK_SECRET", "CARDLINK_DB"]) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
    rmSync(dir, { recursive: true, force: true });
  });

  const identifiers = async (): Promise<string[]> => {
    const store = new SqliteStore(file, { legacy: false });
    try {
      return (
        await store.read("r", (r) =>
          r.all<{ value: string; state: string }>(
            "SELECT value, state FROM identifiers WHERE kind = 'tel' ORDER BY value",
          ),
        )
      ).map((x) => `${x.value}:${x.state}`);
    } finally {
      await store.close();
    }
  };

  it("holds the old number and records the move; refuses an unproven new number and an unknown user", async () => {
    const args = [
      "move-identifier",
      A,
      "--kind",
      "tel",
      "--from",
      "+44 1632 960010",
      "--to",
      "+441632960011",
    ];
    expect(await cli(args, io), err.join("\n")).to.equal(0);
    expect(out[0]).to.equal(
      `moved ${A}'s tel +441632960010 to +441632960011; +441632960010 is held for 7776000 s`,
    );
    expect(await identifiers()).to.deep.equal(["+441632960010:held", "+441632960011:active"]);
    const store = new SqliteStore(file, { legacy: false });
    const moves = await store.read("r", (r) =>
      r.all<{ state: string; old_value: string }>("SELECT state, old_value FROM identity_moves"),
    );
    await store.close();
    expect(moves).to.deep.equal([{ state: "done", old_value: "+441632960010" }]);

    expect(
      await cli(
        ["move-identifier", A, "--kind", "tel", "--from", "+441632960011", "--to", "+441632960099"],
        io,
      ),
    ).to.equal(1);
    expect(err.at(-1)).to.match(/^cardlink: verify \+441632960099 first .*; nothing changed$/);
    expect(
      await cli(
        ["move-identifier", "bob@a.example", "--kind", "tel", "--from", "+441632960011", "--to", "+4416329"],
        io,
      ),
    ).to.equal(1);
    expect(err.at(-1)).to.equal("cardlink: no account bob@a.example; nothing changed");
    expect(await identifiers()).to.deep.equal(["+441632960010:held", "+441632960011:active"]);
  });

  it("usage errors: a JID, --kind tel|email, --from and --to", async () => {
    expect(await cli(["move-identifier", "nope", "--kind", "tel", "--from", "a", "--to", "b"], io)).to.equal(
      2,
    );
    expect(await cli(["move-identifier", A, "--kind", "jid", "--from", "a", "--to", "b"], io)).to.equal(2);
    expect(err.some((l) => l.includes("--kind tel or --kind email"))).to.equal(true);
    expect(await cli(["move-identifier", A, "--kind", "tel", "--from", "+441632960010"], io)).to.equal(2);
    expect(await identifiers()).to.deep.equal(["+441632960010:active", "+441632960011:active"]);
  });
});

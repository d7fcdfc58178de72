/**
 * The stream kind registry and update ids (component/runtime/queue/registry.ts): kinds are wire names registered
 * once, and an update id is `kind:subject:seq` exactly as component/delivery.ts rendered it (its `updateId` for the
 * same entry is a golden file, test/golden/legacy-core/queue/, captured before issue 8 S11 deleted delivery.ts).
 */
import { expect } from "chai";
import type { StreamKind } from "../../component/runtime/queue/api.js";
import { KindRegistry, parseUpdateId, updateId } from "../../component/runtime/queue/registry.js";
import { legacyOutput } from "../harness/legacy-golden.js";

/** component/delivery.ts `updateId(e)`, captured. */
const legacyUpdateId = (e: { kind: string; subject: string; seq: number }): string =>
  legacyOutput("queue", "update-id", "txt", e);

const kind = (name: string, o: Partial<StreamKind> = {}): StreamKind => ({
  name,
  coalesce: "replace",
  subject: "account",
  wake: true,
  render: async () => null,
  ...o,
});

describe("queue registry: stream kinds and update ids", () => {
  it("registers kinds once, in order, and lists the waking ones", () => {
    const r = new KindRegistry();
    r.register(kind("card"));
    r.register(kind("exchange-declined", { coalesce: "keep", subject: "entity", wake: false }));
    expect(r.get("card")?.coalesce).to.equal("replace");
    expect(r.get("nope")).to.equal(undefined);
    expect(r.list().map((k) => k.name)).to.deep.equal(["card", "exchange-declined"]);
    expect(r.waking()).to.deep.equal(["card"]);
    expect(() => r.register(kind("card"))).to.throw(/registered twice/);
    expect(() => r.register(kind("a:b"))).to.throw(/not a wire kind/);
    expect(() => r.register(kind("Card"))).to.throw(/not a wire kind/);
    expect(() => r.register(kind("odd", { coalesce: "merge" as "keep" }))).to.throw(/coalesce/);
  });

  it("update ids are today's kind:subject:seq, and parse back", () => {
    const e = { kind: "card", subject: "alice@example.com", seq: 42 };
    expect(updateId(e.kind, e.subject, e.seq)).to.equal(legacyUpdateId(e));
    expect(updateId("binding", "0b6c-uuid", 7)).to.equal("binding:0b6c-uuid:7");
    expect(parseUpdateId("card:alice@example.com:42")).to.deep.equal(e);
    // An entity subject may hold a colon: the kind ends at the first, the seq starts after the last.
    expect(parseUpdateId("note:a:b:9")).to.deep.equal({ kind: "note", subject: "a:b", seq: 9 });
    for (const bad of [
      "",
      "card",
      "card:x",
      "card::1",
      ":x:1",
      "card:x:01",
      "card:x:-1",
      "card:x:1e3",
      "Card:x:1",
    ]) {
      expect(parseUpdateId(bad), bad).to.equal(undefined);
    }
  });
});

import { expect } from "chai";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { LAYERS, checkLayers, compiledFiles, importsOf, type SourceFile } from "../harness/layers.js";

/** One compiled file with the given import lines, as tsc would emit them. */
const file = (name: string, ...imports: string[]): SourceFile => ({
  file: name,
  text: imports.map((s, i) => `import { x${i} } from "${s}";`).join("\n"),
});

describe("layers: import rules (docs/ARCHITECTURE.md §2)", () => {
  it("the built program imports across layers only as the rules allow", () => {
    const files = compiledFiles();
    // Every layer must be populated, or a missing or misplaced dist/ would pass with nothing checked.
    const built = [
      "composition root",
      "runtime",
      "feature list",
      "feature wiring",
      "feature module",
      "entry",
      "model",
      "stanzas",
      "storage",
      "push",
      "tools",
    ];
    expect(LAYERS.map((l) => l.name).filter((n) => built.includes(n))).to.deep.equal(built);
    for (const l of LAYERS.filter((x) => built.includes(x.name))) {
      expect(
        files.some((f) => l.owns(f.file)),
        `no compiled file in layer ${l.name}`,
      ).to.equal(true);
    }
    expect(files.some((f) => f.file === "stanzas/model/card.ts")).to.equal(true);
    expect(checkLayers(files)).to.deep.equal([]);
  });

  it("fails on a planted push/ → runtime import", () => {
    const v = checkLayers([file("push/apns.ts", "./types.js", "../component/runtime/log.js")]);
    expect(v).to.deep.equal([
      {
        file: "push/apns.ts",
        layer: "push",
        imports: "component/runtime/log.ts",
        why: "push may not import it",
      },
    ]);
  });

  it("catches each forbidden edge and lets each allowed one through", () => {
    const forbidden: Array<[from: string, spec: string, target: string]> = [
      ["push/senders.ts", "../component/runtime/config.js", "component/runtime/config.ts"],
      ["push/dispatcher.ts", "../storage/store.js", "storage/store.ts"],
      ["stanzas/model/card.ts", "../xml.js", "stanzas/xml.ts"],
      ["stanzas/model/policy.ts", "../../storage/store.js", "storage/store.ts"],
      ["stanzas/cardlink.ts", "../storage/store.js", "storage/store.ts"],
      ["stanzas/vcard4.ts", "../component/runtime/jid.js", "component/runtime/jid.ts"],
      ["storage/index.ts", "../component/runtime/config.js", "component/runtime/config.ts"],
      ["storage/sqlite/store.ts", "../../stanzas/vcard4.js", "stanzas/vcard4.ts"],
      // A value import of the model from storage/ survives compilation: only types are allowed there.
      ["storage/store.ts", "../stanzas/model/card.js", "stanzas/model/card.ts"],
      ["component/runtime/app.ts", "../features/cards/index.js", "component/features/cards/index.ts"],
      ["component/runtime/router.ts", "../features.js", "component/features.ts"],
      ["component/runtime/app.ts", "../../push/senders.js", "push/senders.ts"],
      ["component/runtime/ctl.ts", "../features/cards/index.js", "component/features/cards/index.ts"],
      // The feature wiring (component/features.ts) and the entry shims: the new layout's top-level files.
      ["component/features.ts", "../test/harness/suite.js", "test/harness/suite.ts"],
      ["component/features.ts", "../push/senders.js", "push/senders.ts"],
      ["component/features.ts", "../stanzas/xml.js", "stanzas/xml.ts"],
      ["component/main.ts", "./features.js", "component/features.ts"],
      ["component/cli.ts", "../storage/index.js", "storage/index.ts"],
      ["push/apns.ts", "../../outside.js", "../outside.ts"],
    ];
    for (const [from, spec, target] of forbidden) {
      const v = checkLayers([file(from, spec)]);
      expect(v, `${from} → ${spec}`).to.have.length(1);
      expect(v[0]?.imports).to.equal(target);
    }
    const allowed: Array<[from: string, spec: string]> = [
      ["push/senders.ts", "./apns.js"],
      ["push/apns.ts", "@parse/node-apn"],
      ["push/fcm.ts", "firebase-admin/messaging"],
      ["stanzas/model/card.ts", "node:crypto"],
      ["stanzas/model/policy.ts", "./card.js"],
      ["stanzas/vcard4.ts", "./model/card.js"],
      ["stanzas/vcf.ts", "ical.js"],
      ["storage/sqlite/store.ts", "../store.js"],
      ["component/runtime/app.ts", "../../storage/index.js"],
      ["component/runtime/app.ts", "../../stanzas/model/card.js"],
      ["component/runtime/ctl.ts", "../features.js"],
      ["component/runtime/ctl.ts", "../../push/senders.js"],
      ["component/features.ts", "./features/index.js"],
      ["component/features.ts", "./features/exchange/repo.js"],
      ["component/features.ts", "./runtime/metrics.js"],
      ["component/features.ts", "../storage/sqlite/schema-2000.js"],
      ["component/main.ts", "./runtime/main.js"],
      ["component/cli.ts", "./runtime/cli.js"],
      ["test/unit/x.test.ts", "../../component/features/cards/service.js"],
      ["bench/iq.ts", "../storage/sqlite/db.js"],
    ];
    for (const [from, spec] of allowed)
      expect(checkLayers([file(from, spec)]), `${from} → ${spec}`).to.deep.equal([]);
  });

  it("feature modules (component/features/<f>/) reach another feature through its api.ts only", () => {
    const forbidden: Array<[from: string, spec: string]> = [
      ["component/features/exchange/service.ts", "../cards/repo.js"],
      ["component/features/exchange/service.ts", "../index.js"],
      ["component/features/cards/service.ts", "../../cards.js"],
      ["component/features/cards/service.ts", "../../runtime/queue/stream-repo.js"],
      ["component/features/cards/service.ts", "../../runtime/router.js"],
      ["component/features/cards/repo.ts", "../../../storage/sqlite/db.js"],
      ["component/features/cards/repo.ts", "../../../storage/store.js"],
      ["component/features/cards/index.ts", "../../../push/senders.js"],
    ];
    for (const [from, spec] of forbidden) {
      expect(checkLayers([file(from, spec)]), `${from} → ${spec}`).to.have.length(1);
    }
    const allowed: Array<[from: string, spec: string]> = [
      ["component/features/exchange/service.ts", "../cards/api.js"],
      ["component/features/exchange/service.ts", "./repo.js"],
      ["component/features/cards/service.ts", "../../runtime/uow.js"],
      ["component/features/cards/service.ts", "../../runtime/queue/api.js"],
      ["component/features/cards/render.ts", "../../../stanzas/vcard4.js"],
      ["component/features/cards/render.ts", "../../../stanzas/model/policy.js"],
      ["component/features/cards/service.ts", "../../../storage/errors.js"],
      ["component/features/push/channel.ts", "../../../push/senders.js"],
      ["component/features/index.ts", "./cards/index.js"],
      ["component/runtime/ctl.ts", "../features/index.js"],
    ];
    for (const [from, spec] of allowed) {
      expect(checkLayers([file(from, spec)]), `${from} → ${spec}`).to.deep.equal([]);
    }
  });

  it("the model imports no npm package (no XML library), only node built-ins", () => {
    const v = checkLayers([file("stanzas/model/card.ts", "ltx", "@xmpp/xml", "node:crypto", "crypto")]);
    expect(v.map((x) => x.imports)).to.deep.equal(["ltx", "@xmpp/xml"]);
  });

  it("a compiled file outside every layer is a violation (no new top-level folders)", () => {
    const v = checkLayers([file("runtime/app.ts", "../stanzas/xml.js")]);
    expect(v).to.have.length(1);
    expect(v[0]?.layer).to.equal("none");
  });

  it("a flat feature file directly in component/ (the old layout, gone at S11) is in no layer", () => {
    for (const f of ["component/cards.ts", "component/push-dispatcher.ts", "component/userdata.ts"]) {
      const v = checkLayers([file(f, "./runtime/budget.js")]);
      expect(v, f).to.have.length(1);
      expect(v[0]?.layer, f).to.equal("none");
    }
  });

  it("reads import statements, re-exports and import(), not comments or strings", () => {
    const text = [
      '// import { a } from "../component/a.js";',
      '/* export * from "../component/b.js"; */',
      "const s = 'from \"../component/c.js\"';",
      'import { d } from "./d.js";',
      'export * from "./e.js";',
      'export { f } from "./f.js";',
      'import "./g.js";',
      'const h = await import("./h.js");',
    ].join("\n");
    expect(importsOf(text)).to.deep.equal(["./d.js", "./e.js", "./f.js", "./g.js", "./h.js"]);
    expect(
      checkLayers([{ file: "push/x.ts", text: 'export * from "../component/runtime/log.js";' }]),
    ).to.have.length(1);
  });

  it("walks a dist tree, skipping stale outputs whose source is gone", () => {
    const root = mkdtempSync(path.join(tmpdir(), "cardlink-layers-"));
    try {
      const put = (p: string, text: string): void => {
        mkdirSync(path.dirname(path.join(root, p)), { recursive: true });
        writeFileSync(path.join(root, p), text);
      };
      put("push/apns.ts", "");
      put("dist/push/apns.js", 'import { log } from "../component/runtime/log.js";');
      put("dist/push/dispatcher.js", 'import { log } from "../component/log.js";'); // moved away: no source
      const files = compiledFiles(path.join(root, "dist"), root);
      expect(files.map((f) => f.file)).to.deep.equal(["push/apns.ts"]);
      expect(checkLayers(files).map((v) => v.imports)).to.deep.equal(["component/runtime/log.ts"]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

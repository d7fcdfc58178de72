/**
 * component/features/linked/ (issue 11) over a real temp SQLite store with every module's migrations and the
 * runtime parts (test/harness/linked-world.ts): the refusals and caps of service.ts (each writes nothing), the
 * one-time code's failure limit, avatar checks, the `linked-xmpp` channel against a scripted XEP-0356 server
 * (privileged result, refusal → client fallback, timeout → retry, unlinked → drop, unchanged avatar not
 * republished), and the ad-hoc commands.
 */
import { expect } from "chai";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { checkAvatar, sniff } from "../../component/features/linked/avatar.js";
import { LinkedXmppChannel } from "../../component/features/linked/channel.js";
import { linkedCommands } from "../../component/features/linked/commands.js";
import { Metrics } from "../../component/runtime/metrics.js";
import type { ClaimedJob, JobId } from "../../component/runtime/queue/api.js";
import { moduleMigrations } from "../../component/features.js";
import { formElement } from "../../stanzas/dataforms.js";
import { StanzaError } from "../../stanzas/errors.js";
import { NS } from "../../stanzas/ns.js";
import { xml, type Element } from "../../stanzas/xml.js";
import { SCHEMA_2000 } from "../../storage/sqlite/schema-2000.js";
import { SqliteStore } from "../../storage/sqlite/store.js";
import { linkedWorld, type LinkedWorld } from "../harness/linked-world.js";

const [A, B, C, D, F] = ["ann@a.example", "ben@b.example", "cat@a.example", "dan@a.example", "fay@a.example"];
const PNG =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
/** A JPEG header down to its SOF0 (3×2 pixels): enough for the signature and the dimensions. */
const JPEG = Buffer.from([
  0xff, 0xd8, 0xff, 0xe0, 0x00, 0x04, 0x00, 0x00, 0xff, 0xc0, 0x00, 0x0b, 0x08, 0x00, 0x02, 0x00, 0x03, 0x01,
  0x01, 0x11, 0x00,
]);

async function refusal(p: Promise<unknown>): Promise<{ condition: string; text: string; type: string }> {
  try {
    await p;
  } catch (e) {
    if (e instanceof StanzaError) return { condition: e.condition, text: e.message, type: e.type };
    throw e;
  }
  throw new Error("expected a refusal");
}

describe("features/linked (service, avatar, channel, commands) on SQLite", function () {
  this.timeout(30_000);
  let dir: string;
  let store: SqliteStore;
  let w: LinkedWorld;
  let now: number;
  const count = async (sql: string): Promise<number> =>
    Number((await store.read("t.n", (r) => r.get<{ n: number }>(sql)))?.n);
  const snapshot = async (): Promise<string> =>
    JSON.stringify(
      await store.read("t.snap", async (r) => [
        await r.all("SELECT * FROM link_sets ORDER BY id"),
        await r.all("SELECT * FROM link_members ORDER BY id"),
        await r.all("SELECT * FROM link_pending ORDER BY id"),
        await r.all("SELECT id, channel, kind, body, rev FROM jobs ORDER BY id"),
        await r.all("SELECT account_id, kind, subject FROM stream_entries ORDER BY id"),
      ]),
    );
  const codeOf = async (): Promise<string> => {
    const j = await store.read("t.code", (r) =>
      r.get<{ body: string }>("SELECT body FROM jobs WHERE kind = 'linked.verify' ORDER BY id DESC"),
    );
    return (JSON.parse(j?.body ?? "{}") as { data: { code: string } }).data.code;
  };
  const link = async (a: string, b: string) => {
    await w.svc.request(a, b, ["nickname", "avatar", "status"]);
    await w.svc.accept(b, a, ["nickname", "avatar", "status"]);
  };

  beforeEach(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "cardlink-linked-"));
    now = 1_700_000_000_000;
    store = new SqliteStore(path.join(dir, "s.sqlite"), { legacy: false, clock: () => now });
    await store.migrate([SCHEMA_2000, ...moduleMigrations()]);
    w = linkedWorld(store, {}, () => now);
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("every refusal is the right error and writes nothing", async () => {
    await link(A, B);
    await w.svc.request(C, D, ["nickname"]);
    await w.svc.accept(D, C, ["nickname"]);
    const before = await snapshot();
    const cases: Array<[Promise<unknown>, string, RegExp]> = [
      [w.svc.request(A, A, ["nickname"]), "bad-request", /cannot link itself/],
      [w.svc.request(A, "not a jid", ["nickname"]), "jid-malformed", /not a bare user JID/],
      [w.svc.request(A, B, ["nickname"]), "conflict", /already linked/],
      [w.svc.accept(A, F, ["nickname"]), "item-not-found", /no link request from fay@a\.example/],
      [
        w.svc.linkService(A, "icq", "1", ["nickname"]),
        "feature-not-implemented",
        /'icq' is not supported here \(supported: chat, mail\)/,
      ],
      [
        w.svc.linkService(A, "chat", "ann", ["status"]),
        "not-acceptable",
        /syncs nickname, avatar; not status/,
      ],
      [w.svc.confirm(A, "chat", "ann", "123456"), "item-not-found", /no verification of chat account 'ann'/],
      [w.svc.unlink(A, { jid: C }), "item-not-found", /cat@a\.example is not linked with you/],
      [w.svc.unlink(A, { service: "chat", account: "x" }), "item-not-found", /not linked with you/],
      [w.svc.profileChanged(A, { jid: C }, { nickname: "x" }), "item-not-found", /not linked with you/],
      [
        w.svc.profileChanged(A, { jid: A }, { nickname: "x".repeat(21) }),
        "not-acceptable",
        /at most 20 characters/,
      ],
      [w.svc.profileChanged(A, { jid: A }, { status: "y".repeat(41) }), "not-acceptable", /at most 40/],
      [w.svc.profileChanged(A, { jid: A }, { nickname: "  " }), "bad-request", /empty/],
      [
        w.svc.profileChanged(A, { jid: A }, { avatar: { type: "image/jpeg", data: PNG } }),
        "not-acceptable",
        /declared image\/jpeg but its bytes are image\/png/,
      ],
      // Two sets: accepting would merge them; unlink first.
      [
        (async () => {
          await w.svc.request(C, A, ["nickname"]);
        })(),
        "",
        /^$/,
      ],
    ];
    for (const [p, condition, text] of cases.slice(0, -1)) {
      const e = await refusal(p);
      expect([e.condition, e.text], text.source).to.satisfy(
        ([c, t]: [string, string]) => c === condition && text.test(t),
      );
    }
    expect(await snapshot()).to.equal(before);
    await cases[cases.length - 1]?.[0];
    const merged = await refusal(w.svc.accept(A, C, ["nickname"]));
    expect(merged.condition).to.equal("conflict");
    expect(merged.text).to.match(/different linked sets/);
  });

  it("caps: accounts per set and pending requests per user", async () => {
    await link(A, B);
    await link(A, C);
    await link(A, D); // four: the cap
    const full = await refusal(w.svc.request(A, F, ["nickname"]));
    expect([full.condition, full.type]).to.deep.equal(["resource-constraint", "cancel"]);
    expect(full.text).to.match(/at most 4 accounts/);
    for (const x of ["g@a.example", "h@a.example", "i@a.example"]) await w.svc.request(F, x, ["nickname"]);
    const many = await refusal(w.svc.request(F, "j@a.example", ["nickname"]));
    expect([many.condition, many.type]).to.deep.equal(["policy-violation", "wait"]);
    // Asking again renews a request instead of counting it twice.
    await w.svc.request(F, "g@a.example", ["status"]);
    expect(
      await count(
        "SELECT COUNT(*) AS n FROM link_pending WHERE from_account = (SELECT account_id FROM identifiers WHERE value = 'fay@a.example')",
      ),
    ).to.equal(3);
    // An expired request cannot be accepted, and no longer counts.
    now += 86_400_001;
    expect((await refusal(w.svc.accept("g@a.example", F, ["nickname"]))).condition).to.equal(
      "item-not-found",
    );
    await w.svc.request(F, "j@a.example", ["nickname"]);
  });

  it("a service code: wrong codes are limited per user (nothing written), the right one links", async () => {
    await w.svc.linkService(A, "chat", "ann", ["nickname"]);
    const code = await codeOf();
    expect(code).to.match(/^\d{6}$/);
    const before = await snapshot();
    const wrong = code === "111111" ? "222222" : "111111";
    for (let i = 0; i < 3; i++)
      expect((await refusal(w.svc.confirm(A, "chat", "ann", wrong))).condition).to.equal("not-authorized");
    expect(await snapshot()).to.equal(before);
    const limited = await refusal(w.svc.confirm(A, "chat", "ann", code));
    expect([limited.condition, limited.type]).to.deep.equal(["policy-violation", "wait"]);
    expect(limited.text).to.match(/too many wrong codes/);
    // The window passes (and with it the code's lifetime): a new code, then the right one links.
    now += 900_001;
    await w.svc.linkService(A, "chat", "ann", ["nickname"]);
    await w.svc.confirm(A, "chat", "ann", await codeOf());
    expect((await w.svc.list(A)).members.map((m) => m.ref)).to.deep.equal([
      { jid: A },
      { service: "chat", account: "ann" },
    ]);
    // Another person cannot take the same service account.
    await w.svc.linkService(C, "chat", "ann", ["nickname"]).then(
      () => expect.fail("linked twice"),
      (e: StanzaError) => expect(e.message).to.match(/linked to other accounts/),
    );
  });

  it("avatars: signature, size, base64; SHA-1 id and dimensions, bytes untouched", () => {
    expect(sniff(Buffer.from(PNG, "base64"))).to.deep.equal({ type: "image/png", width: 1, height: 1 });
    expect(sniff(JPEG)).to.deep.equal({ type: "image/jpeg", width: 3, height: 2 });
    expect(sniff(Buffer.from("GIF89a\x05\x00\x07\x00", "latin1"))).to.deep.equal({
      type: "image/gif",
      width: 5,
      height: 7,
    });
    const a = checkAvatar({ type: "image/png", data: PNG }, 1000);
    // The id every receiver computes (XEP-0084 / XEP-0153): SHA-1 of the decoded bytes, hex.
    const sha1 = createHash("sha1").update(Buffer.from(PNG, "base64")).digest("hex");
    expect(a).to.deep.equal({ id: sha1, type: "image/png", bytes: 70, width: 1, height: 1, data: PNG });
    const refuse = (f: () => unknown, c: string, t: RegExp) => {
      try {
        f();
      } catch (e) {
        expect((e as StanzaError).condition).to.equal(c);
        expect((e as Error).message).to.match(t);
        return;
      }
      expect.fail("accepted");
    };
    refuse(() => checkAvatar({ type: "image/png", data: "!!!" }, 1000), "bad-request", /not base64/);
    refuse(() => checkAvatar({ type: "image/png", data: PNG }, 69), "not-acceptable", /70 bytes; at most 69/);
    refuse(
      () => checkAvatar({ type: "image/webp", data: PNG }, 1000),
      "not-acceptable",
      /not one of image\/png/,
    );
    refuse(
      () => checkAvatar({ type: "image/gif", data: Buffer.from("hello world!").toString("base64") }, 1000),
      "not-acceptable",
      /no PNG, JPEG or GIF/,
    );
  });

  describe("the linked-xmpp channel against a scripted XEP-0356 server", () => {
    type Reply = "result" | "inner-error" | "forbidden" | "timeout";
    let sent: Element[];
    let script: Reply[];
    let channel: LinkedXmppChannel;
    let metrics: Metrics;
    const forwarded = (iq: Element, type: string) =>
      xml(
        "iq",
        { type: "result", from: iq.attrs.to, id: iq.attrs.id },
        xml(
          "privilege",
          { xmlns: NS.PRIVILEGE },
          xml(
            "forwarded",
            { xmlns: NS.FORWARD },
            xml(
              "iq",
              { xmlns: NS.CLIENT, type },
              ...(type === "error"
                ? [xml("error", { type: "cancel" }, xml("not-allowed", { xmlns: NS.STANZAS }))]
                : []),
            ),
          ),
        ),
      );
    beforeEach(() => {
      sent = [];
      script = [];
      metrics = new Metrics();
      channel = new LinkedXmppChannel({
        read: w.read,
        request: async (iq) => {
          sent.push(iq);
          const r = script.shift() ?? "result";
          if (r === "timeout") throw Object.assign(new Error("no reply"), { name: "IqTimeoutError" });
          if (r === "forbidden")
            throw Object.assign(new Error("forbidden: no privilege granted"), {
              name: "IqErrorReply",
              condition: "forbidden",
              type: "auth",
            });
          return forwarded(iq, r === "result" ? "result" : "error");
        },
        domain: "cards.a.example",
        timeoutMs: 1000,
        concurrency: 4,
        maxAttempts: 3,
        log: pino({ level: "silent" }),
        metrics,
      });
    });
    const claimed = async (): Promise<ClaimedJob[]> =>
      (
        await store.read("t.jobs", (r) =>
          r.all<{ id: number; uid: string; kind: string; target: string; body: string; attempts: number }>(
            "SELECT id, uid, kind, target, body, attempts FROM jobs WHERE channel = 'linked-xmpp' ORDER BY id",
          ),
        )
      ).map((j) => ({
        id: Number(j.id) as JobId,
        rev: 1,
        uid: j.uid,
        kind: j.kind,
        target: j.target,
        body: JSON.parse(j.body) as ClaimedJob["body"],
        attempts: Number(j.attempts),
        expiresAt: 0,
      }));
    const round = async () => {
      const jobs = await claimed();
      const out = await channel.send(jobs);
      await w.uow("t.settle", (u) => channel.settle(u, jobs, out));
      return out;
    };

    it("publishes nick, then avatar data and metadata, to the user's PEP; an unchanged value is not published again", async () => {
      await link(A, B);
      await w.svc.profileChanged(
        A,
        { jid: A },
        { nickname: "Ann", avatar: { type: "image/png", data: PNG } },
      );
      expect(await round()).to.deep.equal([{ status: "done" }]);
      expect(
        sent.map((iq) => [
          iq.attrs.to,
          iq.attrs.from,
          iq.getChild("privileged_iq", NS.PRIVILEGE)?.getChild("iq")?.getChild("pubsub")?.getChild("publish")
            ?.attrs.node,
        ]),
      ).to.deep.equal([
        [B, "cards.a.example", NS.NICK],
        [B, "cards.a.example", NS.AVATAR_DATA],
        [B, "cards.a.example", NS.AVATAR_METADATA],
      ]);
      expect(metrics.get("cardlink_linked_sync_total", { path: "pep", outcome: "applied" })).to.equal(1);
      sent = [];
      await w.svc.profileChanged(A, { jid: A }, { nickname: "Annie" });
      // The job was deleted by the loop in production; here the row is still there: one message for ben.
      await round();
      expect(
        sent.map(
          (iq) =>
            iq
              .getChild("privileged_iq", NS.PRIVILEGE)
              ?.getChild("iq")
              ?.getChild("pubsub")
              ?.getChild("publish")?.attrs.node,
        ),
      ).to.deep.equal([NS.NICK]);
    });

    it("a refusal (no privilege, a PEP error) goes to the clients instead; a timeout retries; an unlinked account is dropped", async () => {
      await link(A, B);
      await w.svc.profileChanged(
        A,
        { jid: A },
        { nickname: "Ann", avatar: { type: "image/png", data: PNG } },
      );
      script = ["forbidden", "result", "inner-error"];
      expect(await round()).to.deep.equal([{ status: "done" }]);
      const entries = await store.read("t.e", (r) =>
        r.all<{ subject: string }>(
          "SELECT subject FROM stream_entries WHERE kind = 'linked-profile' ORDER BY subject",
        ),
      );
      expect(entries.map((e) => e.subject)).to.deep.equal(["avatar", "nickname"]);
      expect(metrics.get("cardlink_linked_sync_total", { path: "client", outcome: "fallback" })).to.equal(1);
      script = ["timeout"];
      const [out] = await round();
      expect(out?.status).to.equal("retry");
      await w.svc.unlink(B, { jid: A });
      await w.svc.request(A, B, ["nickname"]); // the member row is gone; a message still in flight is dropped
      expect(await claimed()).to.deep.equal([]);
    });
  });

  it("ad-hoc commands: link, confirm, list, unlink", async () => {
    const cmds = linkedCommands(w.svc);
    const run = (node: string, user: string, fields?: Record<string, string | string[]>) => {
      const c = cmds.find((x) => x.node === `urn:cardlink:cmd:${node}`);
      if (!c) throw new Error(node);
      const ctx = {
        stanza: xml("iq"),
        payload: xml("command"),
        from: { bare: user, full: `${user}/r` } as never,
        user,
      };
      if (!fields) return Promise.resolve(c.run(ctx, { node, action: "execute" }, undefined));
      const form = formElement({
        type: "submit",
        fields: Object.entries(fields).map(([k, v]) => ({ var: k, values: Array.isArray(v) ? v : [v] })),
      });
      return Promise.resolve(c.run(ctx, { node, action: "complete", form }, { stage: 1 }));
    };
    expect(cmds.map((c) => c.node)).to.deep.equal(
      ["link", "link-confirm", "unlink", "links"].map((n) => `urn:cardlink:cmd:${n}`),
    );
    expect((await run("link", A)).status).to.equal("executing");
    expect((await run("link", A, { jid: B, settings: ["nickname", "status"] })).notes?.[0]?.text).to.match(
      /^Request sent/,
    );
    expect((await run("link-confirm", B, { jid: A, settings: ["nickname"] })).notes?.[0]?.text).to.equal(
      `Linked with ${A}.`,
    );
    expect(
      (await run("link", A, { service: "chat", account: "ann", settings: "nickname" })).notes?.[0]?.text,
    ).to.match(/one-time code/);
    expect(
      (await run("link-confirm", A, { service: "chat", account: "ann", code: await codeOf() })).notes?.[0]
        ?.text,
    ).to.equal("Linked with ann on chat.");
    const list = await run("links", B);
    const lines = list.form
      ?.getChildren("field")[0]
      ?.getChildren("value")
      .map((v) => v.getText());
    expect(lines).to.deep.equal([
      `${B} (this account): nickname`,
      `${A}: nickname, status`,
      "ann on chat: nickname",
    ]);
    const un = await run("unlink", B);
    expect(
      un.form
        ?.getChildren("field")[0]
        ?.getChildren("option")
        .map((o) => o.getChildText("value")),
    ).to.deep.equal([`xmpp:${A}`, "chat:ann"]);
    expect((await run("unlink", B, { which: "chat:ann" })).notes?.[0]?.text).to.equal(
      "Unlinked ann on chat.",
    );
    expect(
      (await refusal(run("link", A, { jid: B, service: "chat", settings: "nickname" }))).condition,
    ).to.equal("bad-request");
  });
});

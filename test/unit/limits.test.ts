/** Fairness and input hygiene without a server: the limiter, quoting, the depth check, JIDs, push keys, IQ shares. */
import { expect } from "chai";
import { AdhocCommands } from "../../component/runtime/adhoc.js";
import { loadConfig, ConfigError } from "../../component/runtime/config.js";
import {
  IqBusyError,
  IqCaller,
  IqSupersededError,
  IqTimeoutError,
} from "../../component/runtime/iq-caller.js";
import { userJid } from "../../component/runtime/jid.js";
import { createLogger } from "../../component/runtime/log.js";
import { Metrics } from "../../component/runtime/metrics.js";
import { RateLimiter } from "../../component/runtime/ratelimit.js";
import { Router } from "../../component/runtime/router.js";
import { parsePushKey } from "../../stanzas/cardlink.js";
import { QUOTE_MAX, StanzaError, TEXT_MAX, quote } from "../../stanzas/errors.js";
import { NS } from "../../stanzas/ns.js";
import { nestedDeeperThan, parseXml, xml, type Element } from "../../stanzas/xml.js";

/** A chain of `n` nested <a/> under `root`, built iteratively (a recursive builder would overflow itself). */
function deep(root: Element, n: number): Element {
  let cur = root;
  for (let i = 0; i < n; i++) {
    const child = xml("a");
    cur.append(child);
    cur = child;
  }
  return root;
}

function errorText(el: Element): { condition: string; text: string } {
  const e = el.getChild("error");
  const cond = e?.getChildElements().find((c) => c.name !== "text");
  return { condition: cond?.name ?? "", text: e?.getChildText("text") ?? "" };
}

describe("limits and input hygiene (unit)", () => {
  describe("RateLimiter", () => {
    it("allows `limit` events in the window, then says how long to wait, and slides", () => {
      let now = 1_000_000;
      const rl = new RateLimiter({ limit: 3, windowMs: 10_000, maxKeys: 100, now: () => now });
      for (let i = 0; i < 3; i++) {
        expect(rl.retryAfter("a")).to.equal(0);
        rl.hit("a");
        now += 1000;
      }
      expect(rl.retryAfter("a")).to.equal(7000); // the first hit leaves the window at 1,010,000
      expect(rl.retryAfter("b")).to.equal(0); // another key is unaffected
      now += 7000;
      expect(rl.retryAfter("a")).to.equal(0);
    });

    it("keeps at most `limit` timestamps per key and at most maxKeys keys", () => {
      let now = 0;
      const rl = new RateLimiter({ limit: 2, windowMs: 60_000, maxKeys: 100, now: () => now });
      for (let i = 0; i < 50; i++) rl.hit("busy");
      expect(rl.retryAfter("busy")).to.be.greaterThan(0);
      for (let i = 0; i < 10_000; i++) {
        rl.hit(`user${i}`);
        now += 1;
      }
      expect(rl.size).to.be.at.most(100);
      // The most recent keys are the ones kept.
      expect(rl.retryAfter("user9999")).to.equal(0);
      rl.hit("user9999");
      expect(rl.retryAfter("user9999")).to.be.greaterThan(0);
    });

    it("forgets keys whose window emptied when pruned", () => {
      let now = 0;
      const rl = new RateLimiter({ limit: 5, windowMs: 1000, maxKeys: 100, now: () => now });
      for (let i = 0; i < 50; i++) rl.hit(`k${i}`);
      now += 1001;
      rl.prune();
      expect(rl.size).to.equal(0);
    });
  });

  describe("quote and the <text/> cap", () => {
    it("quotes at most QUOTE_MAX characters of input and marks the cut", () => {
      const q = quote("x".repeat(100_000));
      expect(q.length).to.equal(QUOTE_MAX + 1);
      expect(q.endsWith("…")).to.equal(true);
      expect(quote("short")).to.equal("short");
      // A surrogate pair is never split.
      const s = `${"x".repeat(QUOTE_MAX - 1)}😀tail`;
      expect(quote(s)).to.equal(`${"x".repeat(QUOTE_MAX - 1)}…`);
    });

    it("caps every StanzaError text, whatever a message embeds", () => {
      const e = new StanzaError("bad-request", `bad: ${"y".repeat(100_000)}`);
      expect(e.message.length).to.be.at.most(TEXT_MAX + 1);
    });
  });

  describe("nesting depth", () => {
    it("finds a too-deep tree without recursion, at 200,000 levels", () => {
      const t = deep(xml("iq"), 200_000);
      expect(nestedDeeperThan(t, 32)).to.equal(true);
      expect(nestedDeeperThan(deep(xml("iq"), 31), 32)).to.equal(false);
      expect(nestedDeeperThan(deep(xml("iq"), 32), 32)).to.equal(true);
      // Parsed from text as well (ltx's parser is iterative).
      const parsed = parseXml(`<iq>${"<a>".repeat(50_000)}${"</a>".repeat(50_000)}</iq>`);
      expect(nestedDeeperThan(parsed, 32)).to.equal(true);
    });

    it("the router answers 200,000 levels with bad-request and never serializes the payload", async () => {
      const sent: Element[] = [];
      const iqCaller = new IqCaller(async () => true, {
        timeoutMs: 1000,
        maxPending: 10,
        maxPendingPerRecipient: 5,
      });
      const router = new Router({
        domain: "cards.localhost",
        allowedDomains: ["localhost"],
        maxStanzaBytes: 256 * 1024,
        maxDepth: 32,
        log: createLogger("silent"),
        metrics: new Metrics(),
        send: async (el) => {
          sent.push(el);
          return true;
        },
        iqCaller,
      });
      let called = false;
      router.iq("get", NS.PING, "ping", () => {
        called = true;
      });
      const iq = xml("iq", { type: "get", id: "d1", from: "alice@localhost/r", to: "cards.localhost" });
      const ping = xml("ping", { xmlns: NS.PING });
      iq.append(deep(ping, 200_000));
      router.handle(iq);
      await router.drain(5000);
      expect(called).to.equal(false);
      expect(sent).to.have.length(1);
      const reply = sent[0] as Element;
      expect(reply.attrs).to.include({ type: "error", id: "d1", to: "alice@localhost/r" });
      expect(errorText(reply)).to.deep.equal({
        condition: "bad-request",
        text: "XML nested deeper than 32 levels",
      });
      // The reply does not carry the payload, so serializing it is shallow.
      expect(reply.toString().length).to.be.below(400);
    });
  });

  describe("user JIDs", () => {
    it("normalizes case and whitespace in one place and refuses non-user JIDs with a short quote", () => {
      expect(userJid("  Alice@LocalHost ", "owner")).to.equal("alice@localhost");
      for (const bad of ["localhost", "alice@localhost/phone", "a b@localhost", "@localhost", ""]) {
        expect(() => userJid(bad, "owner")).to.throw(StanzaError, /owner '.*' is not a bare user JID/);
      }
      try {
        userJid(`${"x".repeat(100_000)}@`, "jid");
        expect.fail("no error");
      } catch (e) {
        expect((e as StanzaError).condition).to.equal("jid-malformed");
        expect((e as StanzaError).message.length).to.be.below(120);
      }
    });
  });

  describe("push keys", () => {
    const bytes = Buffer.alloc(32, 7);
    it("accepts 32 bytes as padded base64 or unpadded base64url, stored as standard base64", () => {
      expect(parsePushKey(bytes.toString("base64"))).to.equal(bytes.toString("base64"));
      const url = Buffer.alloc(32, 0xfb).toString("base64url");
      expect(url).to.match(/[-_]/);
      expect(parsePushKey(url)).to.equal(Buffer.alloc(32, 0xfb).toString("base64"));
    });
    it("refuses anything else", () => {
      const ok = bytes.toString("base64");
      const bad = [
        Buffer.alloc(31).toString("base64"),
        Buffer.alloc(33).toString("base64"),
        // Standard alphabet (+ /) without its padding: neither of the two accepted forms.
        Buffer.alloc(32, 0xfb).toString("base64").slice(0, 43),
        `${ok}==`,
        `${ok.slice(0, 10)}!${ok.slice(11)}`,
        ` ${ok}`,
        // Non-canonical: the last character carries bits a 32-byte value cannot have.
        `${ok.slice(0, 42)}B=`,
        "x".repeat(100_000),
      ];
      for (const k of bad) expect(() => parsePushKey(k), k.slice(0, 50)).to.throw(StanzaError, /push key/);
    });
  });

  describe("shares of shared pools", () => {
    it("IqCaller: one recipient's share is used up without touching another's", async () => {
      const c = new IqCaller(async () => true, {
        timeoutMs: 60_000,
        maxPending: 100,
        maxPendingPerRecipient: 2,
      });
      const sent: Element[] = [];
      const ask = (to: string): Promise<Element> => {
        const iq = xml("iq", { type: "set", to, from: "cards.localhost" });
        sent.push(iq);
        return c.request(iq);
      };
      const p1 = ask("alice@localhost/a");
      const p2 = ask("alice@localhost/b");
      let refused: unknown;
      await ask("Alice@localhost/c").catch((e: unknown) => (refused = e));
      expect(refused).to.be.instanceOf(IqBusyError);
      expect((refused as Error).message).to.match(/alice@localhost/);
      const p3 = ask("bob@localhost/a");
      expect(c.pendingFor("alice@localhost")).to.equal(2);
      expect(c.pendingFor("bob@localhost")).to.equal(1);
      // A reply frees its place in the share.
      const first = sent[0] as Element;
      expect(c.handleReply(xml("iq", { type: "result", from: first.attrs.to, id: first.attrs.id }))).to.equal(
        true,
      );
      await p1;
      expect(c.pendingFor("alice@localhost")).to.equal(1);
      c.rejectAll("test over");
      await Promise.allSettled([p2, p3]);
      expect(c.pendingFor("alice@localhost")).to.equal(0);
      expect(c.inFlight).to.equal(0);
    });

    it("IqCaller: the same IQ again to the same full JID replaces the first; its share is not leaked", async () => {
      // Stream delivery re-offers a page with the same id to a client that reconnected under the same resource
      // (test/integration/resume.test.ts). Before the fix the second request overwrote the first's entry without
      // releasing its slot, so each re-offer leaked one place of the recipient's share for good.
      const c = new IqCaller(async () => true, {
        timeoutMs: 60_000,
        maxPending: 100,
        maxPendingPerRecipient: 2,
      });
      const ask = (): Promise<Element> =>
        c.request(xml("iq", { type: "set", id: "u1", to: "alice@localhost/phone", from: "cards.localhost" }));
      const first = ask();
      const second = ask();
      let superseded: unknown;
      await first.catch((e: unknown) => (superseded = e));
      expect(superseded).to.be.instanceOf(IqSupersededError);
      expect(c.pendingFor("alice@localhost")).to.equal(1);
      expect(c.inFlight).to.equal(1);
      expect(c.handleReply(xml("iq", { type: "result", from: "alice@localhost/phone", id: "u1" }))).to.equal(
        true,
      );
      await second;
      expect(c.pendingFor("alice@localhost")).to.equal(0);
      expect(c.inFlight).to.equal(0);
      // The whole share is still there: two IQs to alice are accepted.
      const more = [ask(), c.request(xml("iq", { type: "set", to: "alice@localhost/tablet" }))];
      expect(c.pendingFor("alice@localhost")).to.equal(2);
      c.rejectAll("test over");
      await Promise.allSettled(more);
    });

    it("IqCaller: a reply timeout while the write still waits for the socket rejects the request, not the process", async () => {
      // A deep send queue to a busy server (bench/fanout.ts, 68 KB pages to 300 holders) held the write past the
      // ack timeout: the rejection had no handler yet and ended cardlink with an unhandled rejection.
      let written: (ok: boolean) => void = () => undefined;
      const c = new IqCaller(() => new Promise<boolean>((r) => (written = r)), {
        timeoutMs: 1,
        maxPending: 10,
        maxPendingPerRecipient: 5,
      });
      const unhandled: unknown[] = [];
      const onUnhandled = (e: unknown): void => void unhandled.push(e);
      process.on("unhandledRejection", onUnhandled);
      try {
        const req = c.request(xml("iq", { type: "set", id: "q1", to: "bob@localhost/phone" }));
        // Timers run in order of expiry: the request's 1 ms timer has fired when this 20 ms one does.
        await new Promise((r) => setTimeout(r, 20));
        await new Promise((r) => setImmediate(r));
        written(true);
        const err = await req.then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).to.be.instanceOf(IqTimeoutError);
        expect(unhandled).to.deep.equal([]);
        expect(c.inFlight).to.equal(0);
      } finally {
        process.off("unhandledRejection", onUnhandled);
      }
    });

    it("AdhocCommands: a user at the per-user cap gets resource-constraint, another user does not", async () => {
      const adhoc = new AdhocCommands("cards.localhost", new Set(), {
        maxSessions: 100,
        maxSessionsPerUser: 2,
      });
      adhoc.register({ node: "n", name: "two steps", run: () => ({ status: "executing", state: {} }) });
      const routes = new Map<string, (ctx: unknown) => Promise<Element>>();
      adhoc.attach({
        iq: (_t: string, _ns: string, _n: string, h: (ctx: unknown) => Promise<Element>) =>
          routes.set("x", h),
      } as unknown as Router);
      const run = routes.get("x") as (ctx: unknown) => Promise<Element>;
      const ctx = (full: string): unknown => {
        const bare = full.split("/")[0] as string;
        return {
          payload: xml("command", { xmlns: NS.COMMANDS, node: "n" }),
          from: { full, bare, local: bare.split("@")[0], domain: "localhost", resource: "r" },
          user: bare,
        };
      };
      await run(ctx("alice@localhost/1"));
      await run(ctx("alice@localhost/2"));
      try {
        await run(ctx("alice@localhost/3"));
        expect.fail("no error");
      } catch (e) {
        expect((e as StanzaError).condition).to.equal("resource-constraint");
        expect((e as StanzaError).type).to.equal("wait");
      }
      await run(ctx("bob@localhost/1"));
      expect(adhoc.openSessions("alice@localhost")).to.equal(2);
      expect(adhoc.openSessions("bob@localhost")).to.equal(1);
    });
  });

  describe("config", () => {
    it("has a bounded limits section with consistent shares", () => {
      const base = { secret: "s" };
      expect(loadConfig({ env: {}, overrides: base }).limits.blocksPerUser).to.equal(1000);
      const bad: Array<[object, RegExp]> = [
        [{ limits: { maxDepth: 2 } }, /limits.maxDepth must be between/],
        [{ limits: { adhocSessionsPerUser: 20, adhocSessions: 10 } }, /adhocSessionsPerUser must be ≤/],
        [{ limits: { resourcesPerUser: 100, pendingIqsPerUser: 10 } }, /resourcesPerUser must be ≤/],
        [
          { limits: { redeemFailuresPerHost: 10, redeemFailuresPerUser: 10 } },
          /redeemFailuresPerHost must be above/,
        ],
        [{ limits: { blocksPerUsr: 1 } }, /unknown setting 'limits.blocksPerUsr'/],
      ];
      for (const [o, re] of bad) {
        expect(() => loadConfig({ env: {}, overrides: { ...base, ...o } })).to.throw(ConfigError, re);
      }
    });
  });
});

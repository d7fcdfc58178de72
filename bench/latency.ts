/**
 * Live update latency (docs/BENCHMARKS.md, "latency"): how long a card change takes to reach a holder who is
 * online, next to a chat message between the same two clients through the same Prosody, in one run.
 *
 *   update         the owner sends <card/> set; cardlink (in this process, TCP_NODELAY on its component socket,
 *                  as in production) writes the result and then the <updates/> IQ for the holder. Measured from
 *                  the owner's send to the holder's receipt (send_to_holder), and from the owner's receipt of
 *                  the result to the holder's receipt (result_to_holder).
 *   update_nagle   the same with TCP_NODELAY turned off on the live socket: the second of two back-to-back
 *                  writes waits for the peer's delayed ACK (~40 ms on Linux). What cardlink did before.
 *   update_corked  `update` with link.corkWrites on (the writes of one event-loop turn leave together, S15):
 *                  shows what the cork costs a lone update.
 *   chat           the owner sends a <message type='chat'/> to the holder's full JID: Prosody alone.
 *
 * One sample at a time (nothing else in flight), cases alternating by round; reports p50/p99 per case and the
 * p50 ratio against chat, on an idle link (50 ms between samples) and a busy one (2 ms), and all of it twice: with
 * the shipped prosody.cfg.lua (network_settings = { nagle = false }) and with Prosody's default (Nagle on).
 * Run: node dist/bench/latency.js [--samples N] [--prosody-nagle | --shipped-only]
 */
import type { Socket } from "node:net";
import { performance } from "node:perf_hooks";
import { NS } from "../stanzas/ns.js";
import { startInProcess, testConfig } from "../test/harness/cardlink.js";
import { connectClient, xml, type Element, type TestClient } from "../test/harness/clients.js";
import { pendingCount } from "../test/harness/inspect.js";
import { sleep, waitFor } from "../test/harness/ports.js";
import { ProsodyServer } from "../test/harness/prosody.js";
import { note, round, runMain, runRounds } from "./lib.js";

export interface LatencyOptions {
  samples?: number;
  /**
   * Only one Prosody variant: true = Nagle on (Prosody's default), false = the shipped prosody.cfg.lua (Nagle off).
   * Unset: both, one after the other, so the two are compared in one run.
   */
  prosodyNagle?: boolean;
}

const CASES = ["update", "update_nagle", "update_corked", "chat"] as const;
type Case = (typeof CASES)[number];

function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] as number;
}

const stats = (xs: number[]): Record<string, number> => ({
  p50_ms: round(percentile(xs, 50), 2),
  p99_ms: round(percentile(xs, 99), 2),
  min_ms: round(Math.min(...xs), 2),
  samples: xs.length,
});

/**
 * The gap between samples: "idle" waits longer than Linux's delayed-ACK timer (40 ms), so no sample inherits
 * unacknowledged bytes from the previous one; "busy" waits 2 ms, as on a component link that carries other users'
 * traffic all the time — there Nagle on either side of a socket delays the next small write.
 */
const REGIMES = { idle: 50, busy: 2 } as const;

export async function run(opts: LatencyOptions = {}): Promise<Record<string, unknown>> {
  const samples = opts.samples ?? 200;
  const variants = opts.prosodyNagle === undefined ? [false, true] : [opts.prosodyNagle];
  const out: Record<string, unknown> = { bench: "latency", samples };
  for (const nagle of variants) {
    note(`latency: Prosody ${nagle ? "with Nagle (its default)" : "without Nagle (prosody.cfg.lua)"}`);
    out[nagle ? "prosody_default_nagle" : "prosody_shipped_config"] = await session(nagle, samples);
  }
  return out;
}

async function session(prosodyNagle: boolean, samples: number): Promise<Record<string, unknown>> {
  // Prosody at warn: the harness default (debug) logs every stanza, which is not what is measured here.
  const prosody = new ProsodyServer({
    fastAuth: true,
    extraGlobal: [
      "log = { warn = '*stderr' }",
      prosodyNagle ? "network_settings = { nagle = true }" : "",
    ].join("\n"),
  });
  await prosody.start();
  prosody.createUsers([
    { user: "owner", password: "ownerpw" },
    { user: "holder", password: "holderpw" },
  ]);
  const app = await startInProcess(testConfig(prosody, { log: { level: "warn", rawStream: false } }));
  // `update` and `update_nagle` run uncorked, `update_corked` corked, whatever link.corkWrites says.
  const corkDefault = app.link.corkWrites;
  const comp = prosody.componentDomain;
  let waiter: { key: string; resolve: (t: number) => void } | undefined;
  const arrived = (key: string): void => {
    if (waiter && waiter.key === key) {
      const w = waiter;
      waiter = undefined;
      w.resolve(performance.now());
    }
  };
  const login = (user: string, onIq?: (iq: Element) => Element | undefined): Promise<TestClient> =>
    connectClient({
      port: prosody.c2sPort,
      domain: prosody.host,
      username: user,
      password: `${user}pw`,
      resource: "phone",
      sendPresence: true,
      ...(onIq ? { onIq } : {}),
    });
  // The owner acks its own updates (the binding notice, the holder's card) like any client.
  const owner = await login("owner", (iq) => {
    if (!iq.getChild("updates", NS.CARDLINK)) throw new Error("service-unavailable");
    return undefined;
  });
  const holder = await login("holder", (iq) => {
    const updates = iq.getChild("updates", NS.CARDLINK);
    if (!updates) throw new Error("service-unavailable");
    for (const u of updates.getChildren("update")) {
      const fn = u
        .getChild("card", NS.CARDLINK)
        ?.getChild("vcard", NS.VCARD4)
        ?.getChild("fn")
        ?.getChildText("text");
      if (fn) arrived(fn);
    }
    return undefined;
  });
  // The clients' own sockets without Nagle too, so both paths are measured from the server's side only.
  for (const c of [owner, holder]) (c.xmpp.socket as unknown as Socket | null)?.setNoDelay(true);
  holder.xmpp.on("stanza", (el: Element) => {
    if (el.is("message") && el.attrs.type === "chat") arrived(el.getChildText("body") ?? "");
  });
  try {
    await holder.xmpp.send(xml("presence", { to: comp }));
    const card = (fn: string): Element =>
      xml(
        "card",
        { xmlns: NS.CARDLINK },
        xml("vcard", { xmlns: NS.VCARD4 }, xml("fn", {}, xml("text", {}, fn))),
      );
    await owner.iq("set", comp, card("warm-up"));
    const code = (await owner.iq("set", comp, xml("exchange-code", { xmlns: NS.CARDLINK }))).getChild(
      "exchange-code",
    )?.attrs.code;
    await holder.iq("set", comp, xml("redeem", { xmlns: NS.CARDLINK, code: String(code) }));
    await waitFor(async () => (await pendingCount(app)) === 0, "binding delivered", 10_000);

    const wait = (key: string): Promise<number> => new Promise((resolve) => (waiter = { key, resolve }));
    let n = 0;
    const result: Record<string, unknown> = {};
    for (const [regime, gapMs] of Object.entries(REGIMES)) {
      const sendToHolder: Record<Case, number[]> = {
        update: [],
        update_nagle: [],
        update_corked: [],
        chat: [],
      };
      const resultToHolder: Record<Exclude<Case, "chat">, number[]> = {
        update: [],
        update_nagle: [],
        update_corked: [],
      };
      note(`latency: ${regime} link (${gapMs} ms between samples), ${samples} samples per case`);
      await runRounds(samples, CASES, async (c) => {
        const key = `s${++n}`;
        const got = wait(key);
        app.link.setNoDelay(c !== "update_nagle");
        app.link.corkWrites = c === "update_corked";
        const t0 = performance.now();
        if (c === "chat") {
          await owner.xmpp.send(xml("message", { type: "chat", to: holder.jid }, xml("body", {}, key)));
          sendToHolder.chat.push((await got) - t0);
        } else {
          const res = owner.iq("set", comp, card(key)).then(() => performance.now());
          const [tr, th] = await Promise.all([res, got]);
          sendToHolder[c].push(th - t0);
          resultToHolder[c].push(th - tr);
        }
        await sleep(gapMs);
      });
      app.link.setNoDelay(true);
      app.link.corkWrites = corkDefault;
      const p50 = (c: Case): number => percentile(sendToHolder[c], 50);
      result[regime] = {
        gap_ms: gapMs,
        send_to_holder: {
          update: stats(sendToHolder.update),
          update_nagle: stats(sendToHolder.update_nagle),
          update_corked: stats(sendToHolder.update_corked),
          chat: stats(sendToHolder.chat),
        },
        result_to_holder: {
          update: stats(resultToHolder.update),
          update_nagle: stats(resultToHolder.update_nagle),
          update_corked: stats(resultToHolder.update_corked),
        },
        ratio_p50_update_vs_chat: round(p50("update") / p50("chat"), 2),
        ratio_p50_nagle_vs_nodelay: round(p50("update_nagle") / p50("update"), 1),
      };
    }
    return result;
  } finally {
    await owner.stop().catch(() => undefined);
    await holder.stop().catch(() => undefined);
    await app.stop();
    await prosody.stop();
    prosody.cleanup();
  }
}

runMain(import.meta.url, "latency", () => {
  const i = process.argv.indexOf("--samples");
  return run({
    ...(i >= 0 ? { samples: Number(process.argv[i + 1]) } : {}),
    ...(process.argv.includes("--prosody-nagle") ? { prosodyNagle: true } : {}),
    ...(process.argv.includes("--shipped-only") ? { prosodyNagle: false } : {}),
  });
});

/**
 * Linked accounts benchmark (docs/BENCHMARKS.md "linked", issue 11): propagation latency of a profile change to a
 * linked account, server-side and as a client update, each against an anchor measured in the same run, and the
 * webhook channel's throughput against the HTTPS stand-in, against a plain HTTPS client's throughput to the same
 * stand-in.
 *
 *   node dist/bench/linked.js [--rounds R] [--changes N] [--webhooks W] [--concurrency C]
 *
 * A real Prosody with two VirtualHosts (the tests' harness option: `second.localhost` grants cardlink XEP-0356
 * pubsub IQ set through mod_privilege; `localhost` grants nothing), cardlink in this process (as the integration
 * tests run it), real @xmpp/client clients; alice@localhost and bob@second.localhost are linked.
 *
 * Cases, alternated per round (lib.ts runRounds), N timed samples each per round, a different nickname each time:
 * - `server_side`: alice reports a nickname (`<profile-changed/>`) → the time until bob's own PEP, read by a plain
 *   client of bob's polling every millisecond, shows it (cardlink's privileged publish included).
 * - `pep_direct` (its anchor): bob's plain client publishes a nickname to its own PEP and gets the result.
 * - `client_update`: bob reports a nickname → the time until alice's client (no privilege on localhost) holds the
 *   `linked-profile` update (the privileged IQ's refusal, the fallback entry and the delivery included).
 * - `iq_anchor` (its anchor): alice's `<links/>` round trip to cardlink.
 * Webhooks: W webhooks enqueued in one unit of work → time until the stand-in received all W (the channel's
 * claim/send/settle rounds, webhooks.concurrency C, default 16); anchor: W POSTs of the same bodies by a plain keep-alive
 * https client with 16 in flight (no queue, no signing), to the same stand-in. Medians; ratios cardlink/anchor.
 * Prints one JSON object on stdout; progress goes to stderr.
 */
import https from "node:https";
import os from "node:os";
import { performance } from "node:perf_hooks";
import { readFileSync } from "node:fs";
import { WEBHOOK_CHANNEL, webhookJob } from "../component/runtime/webhooks/api.js";
import { NS } from "../stanzas/ns.js";
import { startInProcess, testConfig } from "../test/harness/cardlink.js";
import { cardClient } from "../test/harness/cardclient.js";
import { connectClient, xml, type TestClient } from "../test/harness/clients.js";
import { ProsodyServer } from "../test/harness/prosody.js";
import { TEST_SECRET, WebhookStandin } from "../test/standins/webhook-standin.js";
import { median, note, round, runMain, runRounds } from "./lib.js";

export interface LinkedOptions {
  rounds?: number;
  changes?: number;
  webhooks?: number;
  /** webhooks.concurrency: jobs claimed and posted per round of the channel (default 16, the shipped default). */
  concurrency?: number;
}

const SECOND = "second.localhost";
const CASES = ["server_side", "pep_direct", "client_update", "iq_anchor"] as const;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function run(opts: LinkedOptions = {}): Promise<object> {
  const rounds = Math.max(1, opts.rounds ?? 3);
  const changes = Math.max(1, opts.changes ?? 30);
  const hooks = Math.max(10, opts.webhooks ?? 2000);
  const concurrency = Math.max(1, opts.concurrency ?? 16);
  const loadBefore = round(os.loadavg()[0] ?? 0, 2);
  const prosody = new ProsodyServer({ secondHost: { host: SECOND, privileged: true } });
  const standin = new WebhookStandin(TEST_SECRET, false);
  const clients: TestClient[] = [];
  let app: Awaited<ReturnType<typeof startInProcess>> | undefined;
  try {
    await standin.start();
    await prosody.start();
    prosody.createUsers([{ user: "alice", password: "alicepw" }]);
    prosody.createUsers([{ user: "bob", password: "bobpw" }], SECOND);
    app = await startInProcess(
      testConfig(prosody, {
        servedHosts: ["localhost", SECOND],
        log: { level: "silent", rawStream: false },
        webhooks: {
          concurrency,
          connectors: [{ name: "chat", url: standin.url, secret: TEST_SECRET, caFile: standin.caFile }],
        },
      }),
    );
    const alice = await cardClient(prosody, "alice");
    const bob = await cardClient(prosody, "bob", { domain: SECOND });
    const bobPlain = await connectClient({
      port: prosody.c2sPort,
      domain: SECOND,
      username: "bob",
      password: "bobpw",
      resource: "plain",
    });
    clients.push(alice, bob, bobPlain);
    const comp = prosody.componentDomain;
    const linked = (
      c: TestClient,
      type: "get" | "set",
      name: string,
      attrs: Record<string, string>,
      ...ch: ReturnType<typeof xml>[]
    ) => c.iq(type, comp, xml(name, { xmlns: NS.LINKED, ...attrs }, ...ch));
    await linked(alice, "set", "link-request", { jid: `bob@${SECOND}`, settings: "nickname" });
    await linked(bob, "set", "link-accept", { jid: "alice@localhost", settings: "nickname" });
    const pepNick = async (): Promise<string | undefined> => {
      const r = await bobPlain.iq(
        "get",
        `bob@${SECOND}`,
        xml("pubsub", { xmlns: NS.PUBSUB }, xml("items", { node: NS.NICK })),
      );
      return (
        r
          .getChild("pubsub", NS.PUBSUB)
          ?.getChild("items")
          ?.getChildren("item")[0]
          ?.getChildText("nick", NS.NICK) ?? undefined
      );
    };
    let n = 0;
    const one = async (c: (typeof CASES)[number]): Promise<number> => {
      const nick = `nick-${c}-${n++}`;
      const t0 = performance.now();
      switch (c) {
        case "server_side":
          await linked(
            alice,
            "set",
            "profile-changed",
            { jid: "alice@localhost" },
            xml("nickname", {}, nick),
          );
          while ((await pepNick()) !== nick) await sleep(1);
          break;
        case "pep_direct":
          await bobPlain.iq(
            "set",
            `bob@${SECOND}`,
            xml(
              "pubsub",
              { xmlns: NS.PUBSUB },
              xml(
                "publish",
                { node: NS.NICK },
                xml("item", { id: "current" }, xml("nick", { xmlns: NS.NICK }, nick)),
              ),
            ),
          );
          break;
        case "client_update": {
          const seen = () =>
            alice.updates.some(
              (u) => u.kind === "linked-profile" && u.content.getChildText("nickname") === nick,
            );
          await linked(bob, "set", "profile-changed", { jid: `bob@${SECOND}` }, xml("nickname", {}, nick));
          while (!seen()) await sleep(1);
          break;
        }
        case "iq_anchor":
          await linked(alice, "get", "links", {});
          break;
      }
      return performance.now() - t0;
    };
    note(`linked: ${rounds} rounds × ${changes} samples per case`);
    for (const c of CASES) for (let i = 0; i < 3; i++) await one(c); // warm-up
    const samples = await runRounds(rounds, CASES, async (c) => {
      const xs: number[] = [];
      for (let i = 0; i < changes; i++) xs.push(await one(c));
      return xs;
    });
    const med = (c: (typeof CASES)[number]) => round(median(samples[c].flat()), 2);

    // Webhook throughput: the channel vs a plain keep-alive client, alternating, `rounds` times each.
    note(`linked: webhooks ${hooks} per run`);
    const body = (i: number) =>
      JSON.stringify({ type: "bench.event", timestamp: new Date().toISOString(), data: { i } });
    const agent = new https.Agent({ keepAlive: true, maxSockets: 16, ca: readFileSync(standin.caFile) });
    const plain = async (): Promise<number> => {
      const start = standin.received;
      const t0 = performance.now();
      let next = 0;
      const worker = async () => {
        while (next < hooks) {
          const b = body(next++);
          await new Promise<void>((resolve, reject) => {
            const req = https.request(
              standin.url,
              { method: "POST", agent, headers: { "content-type": "application/json" } },
              (res) => {
                res.resume();
                res.on("end", () => resolve());
              },
            );
            req.on("error", reject);
            req.end(b);
          });
        }
      };
      await Promise.all(Array.from({ length: 16 }, worker));
      if (standin.received - start !== hooks) throw new Error("plain client: not every request arrived");
      return (hooks / (performance.now() - t0)) * 1000;
    };
    const channel = async (): Promise<number> => {
      const rt = app?.rt;
      if (!rt) throw new Error("no app");
      const start = standin.received;
      const t0 = performance.now();
      await rt.uow("bench.webhooks", async (u) => {
        for (let i = 0; i < hooks; i++)
          await u.queue.job(WEBHOOK_CHANNEL, webhookJob("chat", "bench.event", { i }, { now: u.now }));
      });
      while (standin.received - start < hooks) await sleep(2);
      return (hooks / (performance.now() - t0)) * 1000;
    };
    await plain();
    await channel();
    const wh = await runRounds(rounds, ["channel", "plain"] as const, (c) =>
      c === "channel" ? channel() : plain(),
    );
    agent.destroy();
    const webhook = round(median(wh.channel), 0);
    const raw = round(median(wh.plain), 0);
    return {
      bench: "linked",
      rounds,
      changes_per_case_per_round: changes,
      load_before: loadBefore,
      latency_ms_p50: {
        server_side: med("server_side"),
        pep_direct: med("pep_direct"),
        client_update: med("client_update"),
        iq_anchor: med("iq_anchor"),
      },
      ratios: {
        server_side_vs_pep_direct: round(med("server_side") / med("pep_direct"), 2),
        client_update_vs_iq_anchor: round(med("client_update") / med("iq_anchor"), 2),
      },
      webhooks: {
        per_run: hooks,
        concurrency,
        channel_per_s: webhook,
        plain_client_per_s: raw,
        ratio: round(webhook / raw, 2),
        runs: { channel: wh.channel.map((x) => round(x, 0)), plain: wh.plain.map((x) => round(x, 0)) },
      },
      load_after: round(os.loadavg()[0] ?? 0, 2),
    };
  } finally {
    for (const c of clients) await c.stop().catch(() => undefined);
    await app?.stop();
    await prosody.stop();
    prosody.cleanup();
    await standin.stop();
  }
}

function arg(name: string): number | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : undefined;
}

runMain(import.meta.url, "linked", () =>
  run({
    ...(arg("rounds") !== undefined ? { rounds: arg("rounds") as number } : {}),
    ...(arg("changes") !== undefined ? { changes: arg("changes") as number } : {}),
    ...(arg("webhooks") !== undefined ? { webhooks: arg("webhooks") as number } : {}),
    ...(arg("concurrency") !== undefined ? { concurrency: arg("concurrency") as number } : {}),
  }),
);

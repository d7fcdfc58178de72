/**
 * kill -9 between a change's commit and its push, on the new core (docs/REDESIGN.md §4.6, issue 8 S13). The old
 * core wrote the push job later, from an in-memory event, so a crash in between lost the wake-up; on the new core
 * the push-scan observer reads the durable stream from its durable mark, so a restart finds what the dead process
 * did not get to. cardlink runs as its own process with the APNs stand-in configured like
 * production; CARDLINK_TEST_FAULT makes it SIGKILL itself right after a named unit of work's COMMIT, before any
 * after-commit hook (component/runtime/app.ts armFault).
 *
 * Case 1: killed after `card.set` (the card and the offline holder's stream entry are durable, no scan ran):
 *   the restarted process sends bob exactly one notice.
 * Case 2: killed after the push-scan that follows a card change (the job row is durable, never sent): the
 *   restarted process sends it, once — not zero, not two.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { expect } from "chai";
import { CardlinkProcess } from "../harness/cardlink.js";
import { cardClient, vcard, type CardClient } from "../harness/cardclient.js";
import { xml } from "../harness/clients.js";
import { sleep, waitFor } from "../harness/ports.js";
import { ProsodyServer } from "../harness/prosody.js";
import { start as startApns, type ApnsStandin } from "../standins/apns-standin.js";

const TOPIC = "org.example.cardlink";
const TOKEN = "b".repeat(64);

describe("kill -9 between commit and push, new core (real Prosody, APNs stand-in, cardlink as a process)", function () {
  this.timeout(120_000);
  const prosody = new ProsodyServer();
  let apns: ApnsStandin;
  let dir: string;
  let db: string;
  let configFile: string;
  let proc: CardlinkProcess | undefined;
  let alice: CardClient | undefined;
  const jid = (u: string): string => `${u}@${prosody.host}`;

  const launch = async (fault?: string): Promise<CardlinkProcess> => {
    const p = CardlinkProcess.forProsody(prosody, db, {
      CARDLINK_CONFIG: configFile,
      ...(fault ? { CARDLINK_TEST_FAULT: fault } : {}),
    });
    p.start();
    await p.waitForEvent("connected", 1, 15_000);
    return p;
  };
  /** Bob's available resources as the database records them (read-only, beside the running process). */
  const bobResources = (): number => {
    const d = new Database(db, { readonly: true });
    try {
      const row = d
        .prepare(
          `SELECT COUNT(*) AS n FROM resources r JOIN identifiers i ON i.account_id = r.account_id
            WHERE i.kind = 'jid' AND i.value = ?`,
        )
        .get(jid("bob")) as { n: number };
      return row.n;
    } finally {
      d.close();
    }
  };
  /** Sets alice's card and waits for the process to kill itself (the IQ's answer, if any, is not what is tested). */
  const changeAndDie = async (p: CardlinkProcess, fn: string): Promise<void> => {
    const exited = new Promise<void>((r) => p.proc?.once("exit", () => r()));
    void (alice as CardClient).cardlinkRaw("set", "card", {}, vcard(fn)).catch(() => undefined);
    await exited;
    expect(p.proc?.signalCode).to.equal("SIGKILL");
  };

  before(async () => {
    apns = await startApns();
    dir = mkdtempSync(path.join(os.tmpdir(), "cardlink-durability-"));
    db = path.join(dir, "cardlink.sqlite");
    configFile = path.join(dir, "cardlink.json");
    writeFileSync(
      configFile,
      JSON.stringify({
        delivery: { ackTimeoutMs: 2000, retryBaseMs: 200, retryMaxMs: 1000 },
        push: {
          retryBaseMs: 200,
          retryMaxMs: 2000,
          perDeviceHourlyBudget: 100,
          apns: {
            production: false,
            address: apns.address,
            port: apns.port,
            ca: apns.caPath,
            token: { key: apns.tokenKeyPath, keyId: apns.keyId, teamId: apns.teamId },
            defaultTopic: TOPIC,
            requestTimeoutMs: 3000,
          },
        },
      }),
    );
    await prosody.start();
    prosody.createUsers(["alice", "bob"].map((u) => ({ user: u, password: `${u}pw` })));
    // Setup on a healthy process: bob (iOS, a token) bound to alice, then offline.
    proc = await launch();
    alice = await cardClient(prosody, "alice");
    await alice.setCard("Alice Zero");
    const bob = await cardClient(prosody, "bob");
    await bob.cardlink(
      "set",
      "device",
      { id: "bob-iphone", platform: "ios" },
      xml("push", { token: TOKEN, topic: TOPIC }),
    );
    const code = String((await alice.cardlink("set", "exchange-code")).getChild("exchange-code")?.attrs.code);
    await bob.cardlink("set", "redeem", { code });
    await bob.waitForUpdate((u) => u.kind === "card", "alice's card at bob");
    await bob.stop();
    await waitFor(() => bobResources() === 0, "bob offline in the database");
    await sleep(500); // the last-resource-left announce (if any) is sent before the fault runs
    await proc.kill("SIGTERM");
  });
  after(async () => {
    await alice?.stop();
    await proc?.kill("SIGKILL");
    await prosody.stop();
    prosody.cleanup();
    await apns?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("killed after card.set: the restarted process sends bob exactly one notice", async () => {
    const before = apns.requestsFor(TOKEN).length;
    proc = await launch("sigkill-after-commit:card.set");
    await changeAndDie(proc, "Alice One");
    expect(apns.requestsFor(TOKEN).length).to.equal(before); // the dead process sent nothing
    proc = await launch();
    await waitFor(() => apns.requestsFor(TOKEN).length > before, "the notice after restart", 15_000);
    await sleep(1000);
    expect(apns.requestsFor(TOKEN).length).to.equal(before + 1);
    await proc.kill("SIGTERM");
  });

  it("killed after the push-scan that follows a change: the queued job is sent once after restart", async () => {
    const before = apns.requestsFor(TOKEN).length;
    proc = await launch("sigkill-after-commit:observer.push-scan@card.set");
    await changeAndDie(proc, "Alice Two");
    expect(apns.requestsFor(TOKEN).length).to.equal(before);
    const jobs = new Database(db, { readonly: true });
    const queued = (
      jobs.prepare("SELECT COUNT(*) AS n FROM jobs WHERE channel = 'push'").get() as { n: number }
    ).n;
    jobs.close();
    expect(queued).to.equal(1); // the scan's job is durable, unsent
    proc = await launch();
    await waitFor(() => apns.requestsFor(TOKEN).length > before, "the queued notice after restart", 15_000);
    await sleep(1000);
    expect(apns.requestsFor(TOKEN).length).to.equal(before + 1);
  });
});

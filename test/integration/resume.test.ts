/**
 * A holder whose connection died silently leaves an update IQ unanswered at cardlink. When that holder comes
 * back — under a new resource, or reconnecting under the same one — the waiting update must reach it at once,
 * not after the unanswered IQ's ack timeout. And a live resource's ack must not wait for a stale one.
 * The ack timeout here is long (60 s): every assertion checks that no timeout or retry happened yet, so the test
 * proves the order of events without asserting wall-clock times.
 */
import { expect } from "chai";
import { cardClient, cardSummary, type CardClient } from "../harness/cardclient.js";
import { useServers } from "../harness/suite.js";
import { serverLabel } from "../harness/server.js";
import { waitFor } from "../harness/ports.js";
import * as look from "../harness/look.js";

describe(`delivery to a resource that comes back (${serverLabel()})`, function () {
  this.timeout(60_000);
  const s = useServers(["owner", "holder", "owner2", "holder2", "owner3", "holder3"], () => ({
    delivery: { ackTimeoutMs: 60_000, retryBaseMs: 1000, retryMaxMs: 5000, batchSize: 20 },
  }));
  const clients: CardClient[] = [];
  const connect = async (u: string, resource = "phone"): Promise<CardClient> => {
    const c = await cardClient(s.prosody, u, { resource });
    clients.push(c);
    return c;
  };
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.stop().catch(() => undefined);
  });

  const retries = (): number => s.app().ctx.metrics.snapshot()["cardlink_delivery_retry_total"] ?? 0;

  /** Binds owner and holder by code; returns once the holder acked the owner's first card. */
  async function bound(owner: CardClient, holder: CardClient): Promise<void> {
    await owner.setCard("First");
    const code = (await owner.cardlink("set", "exchange-code")).getChild("exchange-code")?.attrs.code;
    await holder.cardlink("set", "redeem", { code: String(code) });
    await holder.waitForUpdate((u) => u.kind === "card", "first card");
    await waitFor(
      async () => (await look.pendingCount(s.app(), holder.jid.split("/")[0])) === 0,
      "holder acked",
    );
  }

  /** The ignoring client did receive the update IQ (it is now waiting for an ack that will not come). */
  const offered = (c: CardClient, fn: string): Promise<unknown> =>
    c.waitForStanza(
      (el) =>
        el.is("iq") &&
        el.attrs.type === "set" &&
        el.toString().includes("<updates") &&
        el.toString().includes(`>${fn}<`),
      `update '${fn}' offered to ${c.jid}`,
    );

  /**
   * The holder's only resource silently ignores the update IQ; then `resource` of the same user comes online. It
   * must get the waiting update and ack it before the first IQ could time out: nothing retried, outbox empty.
   */
  async function comesBack(ownerName: string, holderName: string, resource: string): Promise<void> {
    const owner = await connect(ownerName);
    const holder = await connect(holderName);
    await bound(owner, holder);
    const before = retries();
    holder.setAck("ignore");
    await owner.setCard("Second");
    await offered(holder, "Second");
    const back = await connect(holderName, resource);
    const u = await back.waitForUpdate(
      (x) => x.kind === "card" && cardSummary(x.content).fn === "Second",
      `the waiting update at ${resource}`,
    );
    expect(u.to).to.equal(back.jid);
    await waitFor(
      async () => (await look.pendingCount(s.app(), s.jid(holderName))) === 0,
      "outbox empty after the ack",
    );
    expect(retries()).to.equal(before);
  }

  it("a new resource gets the unacknowledged update at once", () => comesBack("owner", "holder", "tablet"));

  // The same resource logs in again (Prosody replaces the old session) and sends presence to cardlink.
  it("a client reconnecting under the same resource gets it at once", () =>
    comesBack("owner2", "holder2", "phone"));

  it("a live resource's ack is not held up by a stale one", async () => {
    const owner = await connect("owner3");
    const stale = await connect("holder3", "old");
    const live = await connect("holder3", "new");
    await waitFor(
      async () => (await look.resources(s.app())).filter((r) => r.bare === s.jid("holder3")).length === 2,
      "both resources known",
    );
    await bound(owner, live);
    stale.setAck("ignore");
    const before = retries();
    await owner.setCard("Second");
    await live.waitForUpdate((x) => x.kind === "card" && cardSummary(x.content).fn === "Second", "update");
    // The stale resource's IQ is still waiting (60 s timeout), yet the entry is already acknowledged and gone.
    await waitFor(
      async () => (await look.pendingCount(s.app(), s.jid("holder3"))) === 0,
      "acked by the live resource",
    );
    expect(s.app().ctx.iq.inFlight).to.be.greaterThan(0);
    expect(retries()).to.equal(before);
  });
});

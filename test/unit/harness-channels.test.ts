/**
 * test/harness/channels.ts (issue 8 S11a): a channel-only runtime on a temp store really runs the engine — a job
 * enqueued in a unit of work is claimed and sent by its channel after commit, outcomes settle (done deletes,
 * dead goes to dead_letters), test/harness/inspect.ts sees what is left, and the parts a channel-only runtime
 * does not have fail loudly instead of writing.
 */
import { expect } from "chai";
import type { ClaimedJob, JobChannel, JobOutcome } from "../../component/runtime/queue/api.js";
import { channelRuntime, type ChannelRuntime } from "../harness/channels.js";
import * as inspect from "../harness/inspect.js";
import { waitFor } from "../harness/ports.js";

describe("test/harness/channels: a runtime with only job channels (S11a)", function () {
  this.timeout(30_000);
  let rt: ChannelRuntime;
  const sent: ClaimedJob[] = [];
  const channel: JobChannel = {
    name: "push",
    concurrency: 10,
    maxAttempts: 3,
    backoff: { baseMs: 1000, maxMs: 8000 },
    onExhausted: "dead-letter",
    send(jobs) {
      sent.push(...jobs);
      return Promise.resolve(
        jobs.map((j): JobOutcome =>
          j.target === "bad" ? { status: "dead", reason: "410 Unregistered" } : { status: "done" },
        ),
      );
    },
  };

  before(async () => {
    rt = await channelRuntime({ channels: [channel] });
  });
  after(() => rt.close());

  it("sends what a unit of work enqueued; done is deleted, dead becomes a dead letter", async () => {
    await rt.uow("t.enqueue", async (u) => {
      const me = await u.accounts.ensure("ann@localhost", { seen: true });
      await u.queue.job("push", { kind: "alert", target: "good", body: { n: 1 }, account: me });
      await u.queue.job("push", { kind: "alert", target: "bad", body: { n: 2 }, account: me });
    });
    await waitFor(async () => (await inspect.jobCount(rt, "push")) === 0, "jobs settled");
    expect(sent.map((j) => j.target).sort()).to.deep.equal(["bad", "good"]);
    const dead = await inspect.deadLetters(rt, "push", { jid: "ann@localhost" });
    expect(dead.map((d) => [d.target, d.lastError, d.body])).to.deep.equal([
      ["bad", "410 Unregistered", { n: 2 }],
    ]);
    expect((await inspect.jobStats(rt, "ann@localhost")).get("push")).to.deep.include({ count: 0, dead: 1 });
    expect(rt.jobEvents.map((e) => e.event)).to.include("dead-letter");
  });

  it("has no stream, audience or other channel: using them fails the unit of work and writes nothing", async () => {
    const before = await inspect.accountCounts(rt);
    const fail = (fn: () => Promise<unknown>) =>
      fn().then(
        () => "ok",
        (e: Error) => e.message,
      );
    expect(
      await fail(() =>
        rt.uow("t.stream", async (u) => {
          const me = await u.accounts.ensure("bea@localhost");
          await u.queue.append("card", [me], { subject: String(me) });
        }),
      ),
    ).to.match(/stream part is not registered/);
    expect(
      await fail(() =>
        rt.uow("t.webhook", (u) => u.queue.job("webhook", { kind: "x", target: "t", body: null })),
      ),
    ).to.match(/no channel 'webhook'/);
    expect(await inspect.accountCounts(rt)).to.deep.equal(before);
    expect(await inspect.account(rt, "bea@localhost")).to.equal(undefined);
  });
});

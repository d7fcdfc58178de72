/**
 * The `linked-xmpp` job channel (PROTOCOL.md §22.6): a sync message to an XMPP account on a served host, applied
 * server-side. For each PEP setting the account syncs (nickname: XEP-0172; avatar: XEP-0084 data, then metadata)
 * whose current value cardlink has not yet published there, one XEP-0356 privileged IQ publishes it to the
 * account's own PEP as if the account had (Prosody's mod_privilege, `iq` permission on the pubsub namespace).
 *
 * Where the server refuses (no privilege granted for that host, an unknown user, a PEP error) the values go to
 * the account's clients instead, as `linked-profile` updates appended in the settle unit of work. A timeout or a
 * `wait` error is retried with backoff. The values are read when the message is sent, so a message that waited
 * carries the newest values, and one to an account unlinked meanwhile is dropped.
 */
import type { Logger } from "pino";
import {
  avatarDataPublish,
  avatarMetadataPublish,
  nickPublish,
  privilegedIq,
  privilegedOutcome,
  type Avatar,
  type Setting,
} from "../../../stanzas/linked.js";
import type { Element } from "../../../stanzas/xml.js";
import type { Metrics } from "../../runtime/metrics.js";
import type { ClaimedJob, JobChannel, JobId, JobOutcome } from "../../runtime/queue/api.js";
import type { Reader, UnitOfWork } from "../../runtime/uow.js";
import { KIND_PROFILE } from "./render.js";
import { linkedRepo } from "./repo.js";
import { LINKED_CHANNEL, PEP_SETTINGS, currentValue, valueHash, type SyncBody } from "./service.js";

export interface LinkedChannelOptions {
  readonly read: Reader;
  /** Sends an IQ and resolves with the result; rejects with the error reply or a timeout (runtime IqCaller). */
  readonly request: (iq: Element, timeoutMs: number) => Promise<Element>;
  readonly domain: string;
  readonly timeoutMs: number;
  readonly concurrency: number;
  readonly maxAttempts: number;
  readonly log: Logger;
  readonly metrics: Metrics;
}

/** What one send decided for a job, for its settle (same process, the next step of the same round). */
interface Result {
  member: string;
  account?: number;
  published: Record<string, string>;
  fallback: Setting[];
  from: SyncBody["from"];
}

type Try = "ok" | "refused" | { retry: string };

export class LinkedXmppChannel implements JobChannel {
  readonly name = LINKED_CHANNEL;
  readonly concurrency: number;
  readonly maxAttempts: number;
  readonly backoff = { baseMs: 1_000, maxMs: 10 * 60_000 };
  readonly onExhausted = "drop" as const;
  private readonly results = new Map<JobId, Result>();
  private seq = 0;

  constructor(private readonly o: LinkedChannelOptions) {
    this.concurrency = o.concurrency;
    this.maxAttempts = o.maxAttempts;
    o.metrics.describe(
      "cardlink_linked_sync_total",
      "sync messages to linked XMPP accounts by path and outcome",
    );
  }

  async send(jobs: readonly ClaimedJob[]): Promise<JobOutcome[]> {
    return Promise.all(jobs.map((j) => this.one(j)));
  }

  private async one(j: ClaimedJob): Promise<JobOutcome> {
    const body = j.body as SyncBody;
    const state = await this.o.read("linked.sync-state", async (r) => {
      const repo = linkedRepo(r.read);
      const m = await repo.member(body.member);
      if (!m || m.account === undefined) return undefined;
      const set = await repo.set(m.setId);
      return set ? { m, set, jid: await r.accounts.jidOf(m.account) } : undefined;
    });
    // Unlinked while the message waited: propagation to it has stopped.
    if (!state) return { status: "drop", reason: "unlinked" };
    const { m, set, jid } = state;
    const res: Result = { member: m.id, account: m.account, published: {}, fallback: [], from: body.from };
    this.results.set(j.id, res);
    for (const s of PEP_SETTINGS) {
      if (!m.settings.includes(s)) continue;
      const v = currentValue(set, s);
      if (v === null) continue;
      const h = valueHash(s, v);
      if (m.published[s] === h) continue;
      const payloads =
        s === "nickname"
          ? [nickPublish(v as string)]
          : [avatarDataPublish(v as Avatar), avatarMetadataPublish(v as Avatar)];
      let outcome: Try = "ok";
      for (const p of payloads) {
        outcome = await this.publish(jid, p);
        if (outcome !== "ok") break;
      }
      if (outcome === "ok") res.published[s] = h;
      else if (outcome === "refused") res.fallback.push(s);
      else return { status: "retry", reason: outcome.retry };
    }
    return { status: "done" };
  }

  private async publish(jid: string, payload: Element): Promise<Try> {
    const id = `lk-${Date.now().toString(36)}-${(this.seq++).toString(36)}`;
    try {
      const result = await this.o.request(privilegedIq(this.o.domain, jid, id, payload), this.o.timeoutMs);
      const inner = privilegedOutcome(result);
      // mod_privilege answers the wrapped IQ's own reply inside <privilege><forwarded/>: an error there is the
      // PEP service's refusal (a node configured otherwise): the clients get the value instead.
      return inner?.type === "result" ? "ok" : "refused";
    } catch (e) {
      const err = e as Error & { condition?: string; type?: string };
      if (err.name === "IqErrorReply") return err.type === "wait" ? { retry: err.message } : "refused";
      return { retry: err.message };
    }
  }

  async settle(u: UnitOfWork, jobs: readonly ClaimedJob[], outcomes: readonly JobOutcome[]): Promise<void> {
    const counted: Array<[string, string]> = [];
    for (let i = 0; i < jobs.length; i++) {
      const j = jobs[i] as ClaimedJob;
      const o = outcomes[i];
      const res = this.results.get(j.id);
      if (o?.status !== "done" || !res) {
        counted.push(["pep", o?.status ?? "retry"]);
        if (o?.status !== "retry") this.results.delete(j.id);
        continue;
      }
      const repo = linkedRepo(u.tx);
      const m = await repo.member(res.member);
      if (!m) continue; // unlinked during the send: nothing more for it
      if (Object.keys(res.published).length) {
        await repo.setPublished(m.id, { ...m.published, ...res.published });
        counted.push(["pep", "applied"]);
      }
      if (res.fallback.length && m.account !== undefined) {
        for (const s of res.fallback) {
          const payload = await u.queue.payload(KIND_PROFILE, { from: res.from });
          await u.queue.append(KIND_PROFILE, [m.account], { subject: s, payload });
        }
        counted.push(["client", "fallback"]);
      }
    }
    u.afterCommit(() => {
      for (const j of jobs) this.results.delete(j.id);
      for (const [path, outcome] of counted)
        this.o.metrics.inc("cardlink_linked_sync_total", { path, outcome });
    });
  }
}

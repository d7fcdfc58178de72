/**
 * The jobs half of QueueTx (docs/REDESIGN.md §2.3.6, §3.3): `job` enqueues one job row in the caller's unit of
 * work (with a ckey: replaces the pending body and bumps rev; without: kept each), `dropJobs` cancels a
 * channel's jobs for a device, a target or a push token. After commit, one `jobs.enqueued` per channel and
 * unit of work wakes the engine (§3.5); the durable state is the row, the event is only a hint.
 */
import { randomUUID } from "node:crypto";
import type { Part } from "../uow.js";
import type { JobChannel, JobsQueueTx } from "./api.js";
import { jobsRepo } from "./jobs-repo.js";

/** Built once per process by createCardlink from the registries (§3.6). */
export interface JobsTxOptions {
  /** The registered channel of that name, or undefined: a job for an unknown channel is a bug. */
  readonly channel: (name: string) => JobChannel | undefined;
}

export function jobsTx(o: JobsTxOptions): Part<JobsQueueTx> {
  return (u) => {
    const repo = jobsRepo(u.tx);
    // Channels this unit of work enqueued to: one post-commit hint each, however many jobs it wrote.
    const announced = new Set<string>();
    const known = (channel: string): void => {
      if (!o.channel(channel)) throw new Error(`queue: no channel '${channel}' is registered`);
    };
    return {
      async job(channel, spec) {
        known(channel);
        // The uid is the receiver's idempotency id (apns-id, webhook-id): made once, kept by every replacement.
        const r = await repo.upsert(channel, spec, randomUUID(), u.now);
        if (!announced.has(channel)) {
          announced.add(channel);
          await u.emit("jobs.enqueued", { channel });
        }
        return { id: r.id, replaced: r.replaced };
      },
      async dropJobs(channel, where) {
        known(channel);
        return repo.dropBy(channel, where);
      },
    };
  };
}

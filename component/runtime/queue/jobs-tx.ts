/**
 * SCAFFOLDING (issue 8 step S2a; docs/ARCHITECTURE.md "Redesign scaffolding"): the jobs half of QueueTx (job,
 * dropJobs). The signature is final; step S5 fills the body (jobs-repo.ts). Until then every use throws, and
 * nothing in the running app calls it.
 */
import type { Part } from "../uow.js";
import type { JobChannel, JobsQueueTx } from "./api.js";

/** Built once per process by createCardlink from the registries (§3.6). */
export interface JobsTxOptions {
  /** The registered channel of that name, or undefined: a job for an unknown channel is a bug. */
  readonly channel: (name: string) => JobChannel | undefined;
}

export function jobsTx(o: JobsTxOptions): Part<JobsQueueTx> {
  void o;
  return () => {
    throw new Error("queue jobs: not built yet (issue 8 step S5)");
  };
}

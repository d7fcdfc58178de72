/**
 * The audience part of a unit of work and of a read context (docs/REDESIGN.md §3.4): the registered paths are
 * composed once per process (compose.ts); each unit of work or read snapshot gets a thin object over its
 * connection. Opening and closing paths is tombstones.ts.
 */
import type { AccountId, Params } from "../../../storage/store.js";
import type { Part, ReadPart, UnitOfWork } from "../uow.js";
import type { AudiencePath, AudienceRead, AudienceTx } from "./api.js";
import { AudienceReader, AudienceSql } from "./compose.js";
import { closed, closedAmong, closedSet, opened } from "./tombstones.js";

/** Built once per process by createCardlink from every module's registered paths (§3.6). */
export interface AudienceOptions {
  readonly paths: readonly AudiencePath[];
}

export function audienceParts(o: AudienceOptions): { tx: Part<AudienceTx>; read: ReadPart<AudienceRead> } {
  const q = new AudienceSql(o.paths); // checks the registry: a bad path fails at start-up
  return {
    tx: (u) => new AudienceWork(q, u),
    read: (r) => new AudienceReader(q, r),
  };
}

class AudienceWork extends AudienceReader implements AudienceTx {
  constructor(
    q: AudienceSql,
    private readonly u: UnitOfWork,
  ) {
    super(q, u.tx);
  }

  opened(owner: AccountId, holders: readonly AccountId[]): Promise<void> {
    return opened(this.u, owner, holders);
  }

  closed(
    pairs: readonly [AccountId, AccountId][] | { sql: string; params: Params },
  ): Promise<Array<[AccountId, AccountId]>> {
    return closed(this.u, this.q, pairs);
  }

  closedSet(pairs: { sql: string; params: Params }): Promise<number> {
    return closedSet(this.u, this.q, pairs);
  }

  closedAmong(accounts: { sql: string; params: Params }): Promise<number> {
    return closedAmong(this.u, this.q, accounts);
  }
}

/**
 * Read-only, JID-keyed views of what the store holds (docs/REDESIGN.md §1.2, §4.7): for tests, `cardlink stats`
 * and the admin commands. Each view is one `store.read` snapshot and goes straight to the rows, past the accounts
 * cache, so it shows what is committed, not what a process remembers.
 *
 * Accounts views only so far (issue 8 step S3); S11a adds the stream, jobs and presence views.
 */
import type { AccountId, ReadTx, Store } from "../../storage/store.js";
import type { BareJid, Device } from "./accounts/api.js";
import { accountsRepo, type AccountRow, type AccountState, type IdentifierRow } from "./accounts/repo.js";

/** What a view needs of a store: a read snapshot (an AppContext's store, or a Store opened on a copy). */
export type Inspectable = Pick<Store, "read">;

export interface AccountView extends AccountRow {
  /** The primary JID (what the wire shows for this account). */
  jid: BareJid;
  /** Every identifier of the account, primary first. */
  identifiers: IdentifierRow[];
}

/** The account a JID identifies (in any identifier state: a held JID still shows whose it was). */
async function accountOf(r: ReadTx, jid: BareJid): Promise<AccountId | undefined> {
  return (await accountsRepo(r).identifier("jid", jid))?.account;
}

export function account(s: Inspectable, jid: BareJid): Promise<AccountView | undefined> {
  return s.read("inspect.account", async (r) => {
    const repo = accountsRepo(r);
    const id = await accountOf(r, jid);
    if (id === undefined) return undefined;
    const row = await repo.account(id);
    if (!row) return undefined;
    const identifiers = await repo.identifiers(id);
    const primary = identifiers.find((i) => i.primary && i.kind === "jid");
    return { ...row, jid: primary?.value ?? jid, identifiers };
  });
}

/** The JID's devices, oldest first; [] when the JID has no account. */
export function devices(s: Inspectable, jid: BareJid): Promise<Device[]> {
  return s.read("inspect.devices", async (r) => {
    const id = await accountOf(r, jid);
    return id === undefined ? [] : accountsRepo(r).devices(id);
  });
}

export function device(s: Inspectable, jid: BareJid, deviceId: string): Promise<Device | undefined> {
  return s.read("inspect.device", async (r) => {
    const id = await accountOf(r, jid);
    return id === undefined ? undefined : accountsRepo(r).device(id, deviceId);
  });
}

/** Accounts per state (every state present, 0 when none): `cardlink stats`. */
export function accountCounts(s: Inspectable): Promise<Record<AccountState, number>> {
  return s.read("inspect.account-counts", (r) => accountsRepo(r).countByState());
}

/**
 * SQL of the accounts part (docs/REDESIGN.md §2.2, §2.6): accounts, identifiers, devices, and the one row of
 * stream_cursors an account owns from birth (its shared cursor, consumer 0, §2.3.3) and the row a device owns.
 *
 * Portable subset (§2.1): named parameters, `ON CONFLICT … DO NOTHING/UPDATE`, `RETURNING`, no two-argument MAX.
 * Every text is a module constant (the statement cache key); the only built one is PRIMARY_JIDS, whose text
 * depends on the backend's Dialect and is still one text per backend. Plain functions over `Sql`: the same calls
 * run on a unit of work's Tx and on a read snapshot.
 */
import type { AccountId, DeviceKey, Dialect, Sql } from "../../../storage/store.js";
import type { BareJid, Device, DeviceInput } from "./api.js";

export type AccountState = "active" | "placeholder" | "deleted";
export type IdentifierKind = "jid" | "tel" | "email";
export type IdentifierState = "active" | "pending" | "held";

export interface AccountRow {
  id: AccountId;
  state: AccountState;
  createdAt: number;
  seenAt?: number;
}
export interface IdentifierRow {
  kind: IdentifierKind;
  value: string;
  account: AccountId;
  state: IdentifierState;
  primary: boolean;
  createdAt: number;
  verifiedAt?: number;
  heldUntil?: number;
}

// ------------------------------------------------------------------------------------------- accounts

const RESOLVE = "SELECT account_id FROM identifiers WHERE kind = 'jid' AND value = :jid AND state = 'active'";
const INSERT_ACCOUNT =
  "INSERT INTO accounts (state, created_at, seen_at) VALUES (:state, :now, :seen) RETURNING id";
const GET_ACCOUNT = "SELECT id, state, created_at, seen_at FROM accounts WHERE id = :id";
const DELETE_ACCOUNT = "DELETE FROM accounts WHERE id = :id";
// A deleted account (issue 14: its rows gone, its JID kept for the holders' `unbound`) whose user comes back is
// reactivated in place, as a placeholder is: the same id, its shared cursor kept by the deletion.
const ACTIVATE =
  "UPDATE accounts SET state = 'active', seen_at = :now WHERE id = :id AND state IN ('placeholder', 'deleted')";
const TOUCH_SEEN = "UPDATE accounts SET seen_at = :now WHERE id = :id AND state = 'active'";
const COUNT_BY_STATE = "SELECT state, COUNT(*) AS n FROM accounts GROUP BY state";
// The account's shared cursor (§2.3.3): created with the account, in its unit of work. pos 0 like the migrated
// ones (§2.8.2): a new lane is empty, so every entry it will ever hold has a seq above 0.
const INSERT_SHARED_CURSOR = `INSERT INTO stream_cursors (account_id, consumer, pos, seen_at)
  VALUES (:id, 0, 0, :now) ON CONFLICT (account_id, consumer) DO NOTHING`;

// ---------------------------------------------------------------------------------------- identifiers

// DO NOTHING, then read back: two concurrent ensures of one JID end with one owner on both backends (PostgreSQL's
// second INSERT waits for the first one's key lock and then does nothing).
const INSERT_JID_IF_ABSENT = `INSERT INTO identifiers (kind, value, account_id, state, is_primary, created_at)
  VALUES ('jid', :jid, :id, 'active', 1, :now) ON CONFLICT (kind, value) DO NOTHING`;
const INSERT_IDENTIFIER = `INSERT INTO identifiers
  (kind, value, account_id, state, is_primary, verified_at, held_until, created_at)
  VALUES (:kind, :value, :id, :state, :primary, :verified, :held, :now)`;
const PRIMARY_JID =
  "SELECT value FROM identifiers WHERE account_id = :id AND is_primary = 1 AND kind = 'jid'";
const primaryJidsSql = (d: Dialect): string =>
  `SELECT account_id, value FROM identifiers WHERE is_primary = 1 AND kind = 'jid'
   AND account_id IN (${d.jsonIds("ids")})`;
const IDENTIFIERS_OF = `SELECT kind, value, account_id, state, is_primary, verified_at, held_until, created_at
  FROM identifiers WHERE account_id = :id ORDER BY is_primary DESC, kind, value`;
const IDENTIFIER = `SELECT kind, value, account_id, state, is_primary, verified_at, held_until, created_at
  FROM identifiers WHERE kind = :kind AND value = :value`;

/** Ids per jidsOf query: keeps the JSON parameter and the IN list small on both backends. */
export const JIDS_CHUNK = 500;

// -------------------------------------------------------------------------------------------- devices

const DEVICE_COLS = `id, account_id, device_id, platform, name, push_token, push_topic, push_key, token_state,
  created_at, updated_at`;
const DEVICES = `SELECT ${DEVICE_COLS} FROM devices WHERE account_id = :id ORDER BY created_at, device_id`;
const DEVICE = `SELECT ${DEVICE_COLS} FROM devices WHERE account_id = :id AND device_id = :device`;
const DEVICE_KEY = "SELECT id FROM devices WHERE account_id = :id AND device_id = :device";
const COUNT_DEVICES = "SELECT COUNT(*) AS n FROM devices WHERE account_id = :id";
// created_at survives a re-registration; the token state follows the token given now (as the legacy store did:
// re-registering a dead token makes it usable again, the client says it is current).
const UPSERT_DEVICE = `INSERT INTO devices
  (account_id, device_id, platform, name, push_token, push_topic, push_key, token_state, created_at, updated_at)
  VALUES (:id, :device, :platform, :name, :token, :topic, :key, :state, :now, :now)
  ON CONFLICT (account_id, device_id) DO UPDATE SET platform = excluded.platform, name = excluded.name,
    push_token = excluded.push_token, push_topic = excluded.push_topic, push_key = excluded.push_key,
    token_state = excluded.token_state, updated_at = excluded.updated_at
  RETURNING ${DEVICE_COLS}`;
// push_nodes and jobs rows of the device go by their foreign keys (ON DELETE CASCADE); resources.device is SET NULL.
const DELETE_DEVICE = "DELETE FROM devices WHERE id = :key";
// stream_cursors.consumer has no foreign key (0 is not a device): the device's cursor is deleted explicitly.
const DELETE_DEVICE_CURSOR = "DELETE FROM stream_cursors WHERE account_id = :id AND consumer = :key";
const INVALIDATE_TOKEN = `UPDATE devices SET token_state = 'invalid', updated_at = :now
  WHERE push_token = :token AND token_state <> 'invalid'`;

interface DeviceRow {
  id: number;
  account_id: number;
  device_id: string;
  platform: string;
  name: string | null;
  push_token: string | null;
  push_topic: string | null;
  push_key: string | null;
  token_state: string;
  created_at: number;
  updated_at: number;
}
interface IdentifierDbRow {
  kind: string;
  value: string;
  account_id: number;
  state: string;
  is_primary: number;
  verified_at: number | null;
  held_until: number | null;
  created_at: number;
}

const opt = <T>(v: T | null | undefined): T | undefined => (v === null ? undefined : v);

function toDevice(r: DeviceRow): Device {
  const d: Device = {
    key: Number(r.id) as DeviceKey,
    account: Number(r.account_id) as AccountId,
    deviceId: r.device_id,
    platform: r.platform as Device["platform"],
    tokenState: r.token_state as Device["tokenState"],
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
  };
  // Absent rather than undefined-valued, so a Device compares equal to what was registered.
  if (r.name !== null) d.name = r.name;
  if (r.push_token !== null) d.pushToken = r.push_token;
  if (r.push_topic !== null) d.pushTopic = r.push_topic;
  if (r.push_key !== null) d.pushKey = r.push_key;
  return d;
}

function toIdentifier(r: IdentifierDbRow): IdentifierRow {
  const i: IdentifierRow = {
    kind: r.kind as IdentifierKind,
    value: r.value,
    account: Number(r.account_id) as AccountId,
    state: r.state as IdentifierState,
    primary: Number(r.is_primary) === 1,
    createdAt: Number(r.created_at),
  };
  const verified = opt(r.verified_at);
  const held = opt(r.held_until);
  if (verified !== undefined) i.verifiedAt = Number(verified);
  if (held !== undefined) i.heldUntil = Number(held);
  return i;
}

export const accountsRepo = (q: Sql) => ({
  // --- accounts and identifiers
  async resolve(jid: BareJid): Promise<AccountId | undefined> {
    const r = await q.get<{ account_id: number }>(RESOLVE, { jid });
    return r === undefined ? undefined : (Number(r.account_id) as AccountId);
  },
  async insertAccount(state: "active" | "placeholder", now: number): Promise<AccountId> {
    const r = await q.get<{ id: number }>(INSERT_ACCOUNT, {
      state,
      now,
      seen: state === "active" ? now : null,
    });
    if (!r) throw new Error("accounts: INSERT … RETURNING gave no id");
    return Number(r.id) as AccountId;
  },
  /** Makes `jid` the account's primary JID unless some account already has it; true when this one got it. */
  async claimJid(jid: BareJid, id: AccountId, now: number): Promise<boolean> {
    return (await q.run(INSERT_JID_IF_ABSENT, { jid, id, now })).changes > 0;
  },
  /** A plain insert: a second owner of (kind, value) or a second primary is a StoreConflictError. */
  async insertIdentifier(
    i: Omit<IdentifierRow, "createdAt" | "verifiedAt" | "heldUntil"> & {
      verifiedAt?: number;
      heldUntil?: number;
    },
    now: number,
  ): Promise<void> {
    await q.run(INSERT_IDENTIFIER, {
      kind: i.kind,
      value: i.value,
      id: i.account,
      state: i.state,
      primary: i.primary ? 1 : 0,
      verified: i.verifiedAt ?? null,
      held: i.heldUntil ?? null,
      now,
    });
  },
  async insertSharedCursor(id: AccountId, now: number): Promise<void> {
    await q.run(INSERT_SHARED_CURSOR, { id, now });
  },
  async account(id: AccountId): Promise<AccountRow | undefined> {
    const r = await q.get<{ id: number; state: string; created_at: number; seen_at: number | null }>(
      GET_ACCOUNT,
      { id },
    );
    if (!r) return undefined;
    const a: AccountRow = { id, state: r.state as AccountState, createdAt: Number(r.created_at) };
    if (r.seen_at !== null) a.seenAt = Number(r.seen_at);
    return a;
  },
  /** Deletes the account row; every table referencing it follows by foreign key (contract case 20). */
  async deleteAccount(id: AccountId): Promise<boolean> {
    return (await q.run(DELETE_ACCOUNT, { id })).changes > 0;
  },
  /** placeholder → active, with seen_at; true when it was a placeholder. */
  async activate(id: AccountId, now: number): Promise<boolean> {
    return (await q.run(ACTIVATE, { id, now })).changes > 0;
  },
  async touchSeen(id: AccountId, now: number): Promise<void> {
    await q.run(TOUCH_SEEN, { id, now });
  },
  async countByState(): Promise<Record<AccountState, number>> {
    const out: Record<AccountState, number> = { active: 0, placeholder: 0, deleted: 0 };
    for (const r of await q.all<{ state: string; n: number }>(COUNT_BY_STATE)) {
      out[r.state as AccountState] = Number(r.n);
    }
    return out;
  },
  async primaryJid(id: AccountId): Promise<BareJid | undefined> {
    return (await q.get<{ value: string }>(PRIMARY_JID, { id }))?.value;
  },
  /** At most JIDS_CHUNK ids per call (the caller chunks). */
  async primaryJids(ids: readonly AccountId[]): Promise<Map<AccountId, BareJid>> {
    const rows = await q.all<{ account_id: number; value: string }>(primaryJidsSql(q.dialect), {
      ids: JSON.stringify(ids),
    });
    return new Map(rows.map((r) => [Number(r.account_id) as AccountId, r.value]));
  },
  async identifiers(id: AccountId): Promise<IdentifierRow[]> {
    return (await q.all<IdentifierDbRow>(IDENTIFIERS_OF, { id })).map(toIdentifier);
  },
  async identifier(kind: IdentifierKind, value: string): Promise<IdentifierRow | undefined> {
    const r = await q.get<IdentifierDbRow>(IDENTIFIER, { kind, value });
    return r && toIdentifier(r);
  },

  // --- devices
  async devices(id: AccountId): Promise<Device[]> {
    return (await q.all<DeviceRow>(DEVICES, { id })).map(toDevice);
  },
  async device(id: AccountId, deviceId: string): Promise<Device | undefined> {
    const r = await q.get<DeviceRow>(DEVICE, { id, device: deviceId });
    return r && toDevice(r);
  },
  async deviceKey(id: AccountId, deviceId: string): Promise<DeviceKey | undefined> {
    const r = await q.get<{ id: number }>(DEVICE_KEY, { id, device: deviceId });
    return r === undefined ? undefined : (Number(r.id) as DeviceKey);
  },
  async countDevices(id: AccountId): Promise<number> {
    return Number((await q.get<{ n: number }>(COUNT_DEVICES, { id }))?.n ?? 0);
  },
  async upsertDevice(id: AccountId, d: DeviceInput, now: number): Promise<Device> {
    const r = await q.get<DeviceRow>(UPSERT_DEVICE, {
      id,
      device: d.deviceId,
      platform: d.platform,
      name: d.name ?? null,
      token: d.pushToken ?? null,
      topic: d.pushTopic ?? null,
      key: d.pushKey ?? null,
      state: d.pushToken ? "ok" : "none",
      now,
    });
    if (!r) throw new Error("accounts: device upsert … RETURNING gave no row");
    return toDevice(r);
  },
  async deleteDevice(id: AccountId, key: DeviceKey): Promise<void> {
    await q.run(DELETE_DEVICE_CURSOR, { id, key });
    await q.run(DELETE_DEVICE, { key });
  },
  async invalidateToken(token: string, now: number): Promise<number> {
    return (await q.run(INVALIDATE_TOKEN, { token, now })).changes;
  },
});

export type AccountsRepo = ReturnType<typeof accountsRepo>;

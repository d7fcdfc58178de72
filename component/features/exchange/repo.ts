/**
 * The exchange feature's SQL on schema 2000 (docs/REDESIGN.md §2.6 "features/exchange", §3.2): bindings, shares
 * (the `binding` audience path), blocks, exchange requests and one-time codes, keyed by account ids. Plain
 * functions over `Sql` in the portable subset (§2.1), texts as module constants (the statement cache key). No
 * domain rule lives here: the checks, their order and the notices are service.ts's.
 */
import type { AccountId, Seq, Sql } from "../../../storage/store.js";
import type { AudiencePath } from "../../runtime/audience/api.js";

/** The `binding` audience path (§2.5.1): `shares` rows, directed owner → holder, with the owner's policy. */
export const BINDING_PATH: AudiencePath = {
  name: "binding",
  from: "shares s",
  owner: "s.owner",
  holder: "s.holder",
  policy: "s.policy",
  seq: "s.seq",
};

export type Via = "request" | "code";

export interface BindingRow {
  id: string;
  a: AccountId; // a < b (the table's CHECK): the pair is stored once
  b: AccountId;
  aDevices: string[]; // device ids (wire strings) at binding time
  bDevices: string[];
  via: Via;
  createdAt: number;
}
export interface RequestRow {
  id: string;
  from: AccountId;
  to: AccountId;
  fromDevice?: string;
  createdAt: number;
  expiresAt: number;
}
export interface CodeRow {
  code: string;
  owner: AccountId;
  deviceId?: string;
  createdAt: number;
  expiresAt: number;
}

interface BindingDb {
  id: string;
  a: number;
  b: number;
  a_devices: string;
  b_devices: string;
  via: string;
  created_at: number;
}
interface RequestDb {
  id: string;
  from_account: number;
  to_account: number;
  from_device: string | null;
  created_at: number;
  expires_at: number;
}
interface CodeDb {
  code: string;
  owner: number;
  device_id: string | null;
  created_at: number;
  expires_at: number;
}

const toBinding = (r: BindingDb): BindingRow => ({
  id: r.id,
  a: Number(r.a) as AccountId,
  b: Number(r.b) as AccountId,
  aDevices: JSON.parse(r.a_devices) as string[],
  bDevices: JSON.parse(r.b_devices) as string[],
  via: r.via as Via,
  createdAt: Number(r.created_at),
});
const toRequest = (r: RequestDb): RequestRow => ({
  id: r.id,
  from: Number(r.from_account) as AccountId,
  to: Number(r.to_account) as AccountId,
  ...(r.from_device === null ? {} : { fromDevice: r.from_device }),
  createdAt: Number(r.created_at),
  expiresAt: Number(r.expires_at),
});
const toCode = (r: CodeDb): CodeRow => ({
  code: r.code,
  owner: Number(r.owner) as AccountId,
  ...(r.device_id === null ? {} : { deviceId: r.device_id }),
  createdAt: Number(r.created_at),
  expiresAt: Number(r.expires_at),
});

/** The stored order of a pair (bindings.a < bindings.b). */
export const ordered = (x: AccountId, y: AccountId): [AccountId, AccountId] => (x < y ? [x, y] : [y, x]);

const BINDING_COLS = "id, a, b, a_devices, b_devices, via, created_at";
const BINDING_OF_PAIR = `SELECT ${BINDING_COLS} FROM bindings WHERE a = :a AND b = :b`;
const BINDING_BY_ID = `SELECT ${BINDING_COLS} FROM bindings WHERE id = :id`;
// Two index probes (bindings' UNIQUE (a, b) and bindings_b), not an OR over both columns.
const SHARES_AROUND = `SELECT owner, holder, policy FROM shares WHERE owner = :me
  UNION ALL SELECT owner, holder, policy FROM shares WHERE holder = :me`;
const BINDINGS_OF = `SELECT ${BINDING_COLS} FROM bindings WHERE a = :me
  UNION ALL SELECT ${BINDING_COLS} FROM bindings WHERE b = :me`;
const INSERT_BINDING = `INSERT INTO bindings (id, a, b, a_devices, b_devices, via, created_at)
  VALUES (:id, :a, :b, :ad, :bd, :via, :now) ON CONFLICT (a, b) DO NOTHING`;
const DELETE_BINDING = "DELETE FROM bindings WHERE id = :id"; // shares go by ON DELETE CASCADE
const INSERT_SHARE = `INSERT INTO shares (owner, holder, binding_id, policy, seq)
  VALUES (:owner, :holder, :binding, NULL, :seq)`;

const IS_BLOCKED = "SELECT 1 AS one FROM blocks WHERE owner = :owner AND blocked = :blocked";
const COUNT_BLOCKS = "SELECT COUNT(*) AS n FROM blocks WHERE owner = :owner";
const INSERT_BLOCK = `INSERT INTO blocks (owner, blocked, created_at) VALUES (:owner, :blocked, :now)
  ON CONFLICT (owner, blocked) DO NOTHING`;
const DELETE_BLOCK = "DELETE FROM blocks WHERE owner = :owner AND blocked = :blocked";
const BLOCKED_BY = "SELECT blocked FROM blocks WHERE owner = :owner";

const REQUEST_COLS = "id, from_account, to_account, from_device, created_at, expires_at";
const REQUEST_BY_ID = `SELECT ${REQUEST_COLS} FROM exchange_requests WHERE id = :id`;
const REQUEST_BETWEEN = `SELECT ${REQUEST_COLS} FROM exchange_requests WHERE from_account = :from AND to_account = :to`;
const PENDING_TO = `SELECT ${REQUEST_COLS} FROM exchange_requests WHERE to_account = :me AND expires_at > :now
  ORDER BY created_at, id`;
const PENDING_FROM = `SELECT ${REQUEST_COLS} FROM exchange_requests WHERE from_account = :me AND expires_at > :now
  ORDER BY created_at, id`;
const COUNT_PENDING_FROM =
  "SELECT COUNT(*) AS n FROM exchange_requests WHERE from_account = :me AND expires_at > :now";
const INSERT_REQUEST = `INSERT INTO exchange_requests (id, from_account, to_account, from_device, created_at, expires_at)
  VALUES (:id, :from, :to, :device, :now, :expires) ON CONFLICT (from_account, to_account) DO NOTHING`;
const DELETE_REQUEST = "DELETE FROM exchange_requests WHERE id = :id";
const EXPIRED_REQUESTS = `SELECT ${REQUEST_COLS} FROM exchange_requests WHERE expires_at <= :now
  ORDER BY expires_at LIMIT :limit`;

const CODE_COLS = "code, owner, device_id, created_at, expires_at";
const CODE = `SELECT ${CODE_COLS} FROM exchange_codes WHERE code = :code`;
const TAKE_CODE = "DELETE FROM exchange_codes WHERE code = :code";
const COUNT_CODES = "SELECT COUNT(*) AS n FROM exchange_codes WHERE owner = :owner AND expires_at > :now";
const INSERT_CODE = `INSERT INTO exchange_codes (code, owner, device_id, created_at, expires_at)
  VALUES (:code, :owner, :device, :now, :expires)`;
const REQUESTS_OF = `SELECT ${REQUEST_COLS} FROM exchange_requests WHERE from_account = :me
  UNION ALL SELECT ${REQUEST_COLS} FROM exchange_requests WHERE to_account = :me AND from_account <> :me`;
const DELETE_CODES_OF = "DELETE FROM exchange_codes WHERE owner = :owner";
const DELETE_BLOCKS_OF = "DELETE FROM blocks WHERE owner = :owner";
const DELETE_EXPIRED_CODES = "DELETE FROM exchange_codes WHERE expires_at <= :now";

const count = async (q: Sql, sql: string, p: Record<string, string | number>): Promise<number> =>
  Number((await q.get<{ n: number }>(sql, p))?.n ?? 0);

export const exchangeRepo = (q: Sql) => ({
  // ---- bindings and the `binding` path
  binding: async (x: AccountId, y: AccountId): Promise<BindingRow | undefined> => {
    const [a, b] = ordered(x, y);
    const r = await q.get<BindingDb>(BINDING_OF_PAIR, { a, b });
    return r && toBinding(r);
  },
  bindingById: async (id: string): Promise<BindingRow | undefined> => {
    const r = await q.get<BindingDb>(BINDING_BY_ID, { id });
    return r && toBinding(r);
  },
  /** Every share `me` gives or gets, in one statement (each half an index range: the key, shares_holder). */
  sharesAround: async (
    me: AccountId,
  ): Promise<Array<{ owner: AccountId; holder: AccountId; policy: string | null }>> =>
    (await q.all<{ owner: number; holder: number; policy: string | null }>(SHARES_AROUND, { me })).map(
      (r) => ({
        owner: Number(r.owner) as AccountId,
        holder: Number(r.holder) as AccountId,
        policy: r.policy,
      }),
    ),
  bindingsOf: async (me: AccountId): Promise<BindingRow[]> =>
    (await q.all<BindingDb>(BINDINGS_OF, { me })).map(toBinding),
  /** The binding row and both shares (policy NULL: everything); false when the pair is bound already. */
  insertBinding: async (b: BindingRow, seq: Seq): Promise<boolean> => {
    const { changes } = await q.run(INSERT_BINDING, {
      id: b.id,
      a: b.a,
      b: b.b,
      ad: JSON.stringify(b.aDevices),
      bd: JSON.stringify(b.bDevices),
      via: b.via,
      now: b.createdAt,
    });
    if (changes === 0) return false;
    await q.run(INSERT_SHARE, { owner: b.a, holder: b.b, binding: b.id, seq });
    await q.run(INSERT_SHARE, { owner: b.b, holder: b.a, binding: b.id, seq });
    return true;
  },
  deleteBinding: async (id: string): Promise<boolean> => (await q.run(DELETE_BINDING, { id })).changes > 0,

  // ---- blocks
  isBlocked: async (owner: AccountId, blocked: AccountId): Promise<boolean> =>
    (await q.get(IS_BLOCKED, { owner, blocked })) !== undefined,
  countBlocks: (owner: AccountId): Promise<number> => count(q, COUNT_BLOCKS, { owner }),
  block: async (owner: AccountId, blocked: AccountId, now: number): Promise<boolean> =>
    (await q.run(INSERT_BLOCK, { owner, blocked, now })).changes > 0,
  unblock: async (owner: AccountId, blocked: AccountId): Promise<boolean> =>
    (await q.run(DELETE_BLOCK, { owner, blocked })).changes > 0,
  blockedBy: async (owner: AccountId): Promise<AccountId[]> =>
    (await q.all<{ blocked: number }>(BLOCKED_BY, { owner })).map((r) => Number(r.blocked) as AccountId),

  // ---- requests
  request: async (id: string): Promise<RequestRow | undefined> => {
    const r = await q.get<RequestDb>(REQUEST_BY_ID, { id });
    return r && toRequest(r);
  },
  requestBetween: async (from: AccountId, to: AccountId): Promise<RequestRow | undefined> => {
    const r = await q.get<RequestDb>(REQUEST_BETWEEN, { from, to });
    return r && toRequest(r);
  },
  pendingFor: async (me: AccountId, now: number): Promise<RequestRow[]> =>
    (await q.all<RequestDb>(PENDING_TO, { me, now })).map(toRequest),
  pendingFrom: async (me: AccountId, now: number): Promise<RequestRow[]> =>
    (await q.all<RequestDb>(PENDING_FROM, { me, now })).map(toRequest),
  countPendingFrom: (me: AccountId, now: number): Promise<number> =>
    count(q, COUNT_PENDING_FROM, { me, now }),
  /** False when a request from → to exists already (the pair is unique). */
  insertRequest: async (r: RequestRow): Promise<boolean> =>
    (
      await q.run(INSERT_REQUEST, {
        id: r.id,
        from: r.from,
        to: r.to,
        device: r.fromDevice ?? null,
        now: r.createdAt,
        expires: r.expiresAt,
      })
    ).changes > 0,
  deleteRequest: async (id: string): Promise<boolean> => (await q.run(DELETE_REQUEST, { id })).changes > 0,
  expiredRequests: async (now: number, limit: number): Promise<RequestRow[]> =>
    (await q.all<RequestDb>(EXPIRED_REQUESTS, { now, limit })).map(toRequest),

  // ---- codes
  code: async (code: string): Promise<CodeRow | undefined> => {
    const r = await q.get<CodeDb>(CODE, { code });
    return r && toCode(r);
  },
  /** Deletes the code; false when it was gone already. */
  takeCode: async (code: string): Promise<boolean> => (await q.run(TAKE_CODE, { code })).changes > 0,
  countCodes: (owner: AccountId, now: number): Promise<number> => count(q, COUNT_CODES, { owner, now }),
  insertCode: async (c: CodeRow): Promise<void> => {
    await q.run(INSERT_CODE, {
      code: c.code,
      owner: c.owner,
      device: c.deviceId ?? null,
      now: c.createdAt,
      expires: c.expiresAt,
    });
  },
  /** Every request from or to `me`, expired ones too (account deletion). */
  requestsOf: async (me: AccountId): Promise<RequestRow[]> =>
    (await q.all<RequestDb>(REQUESTS_OF, { me })).map(toRequest),
  deleteCodesOf: async (owner: AccountId): Promise<number> =>
    (await q.run(DELETE_CODES_OF, { owner })).changes,
  deleteBlocksOf: async (owner: AccountId): Promise<number> =>
    (await q.run(DELETE_BLOCKS_OF, { owner })).changes,
  deleteExpiredCodes: async (now: number): Promise<number> =>
    (await q.run(DELETE_EXPIRED_CODES, { now })).changes,
});
export type ExchangeRepo = ReturnType<typeof exchangeRepo>;

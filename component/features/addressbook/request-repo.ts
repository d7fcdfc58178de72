/**
 * Update requests' SQL (migration 3010, `book_requests`; docs/REDESIGN.md §2.1: one portable text for SQLite and
 * PostgreSQL; each constant is a statement-cache key). A request is `open` until it is answered, declined, expired
 * or withdrawn; closed rows stay until the sweep prunes them (REQUEST_KEEP_CLOSED_MS after closing).
 */
import type { AccountId, Sql } from "../../../storage/store.js";
import type { RequestForm } from "../../../stanzas/update-request.js";

export type RequestState = "open" | "answered" | "declined" | "expired" | "withdrawn";

export interface RequestRow {
  id: string;
  owner: AccountId;
  target: AccountId;
  entry: string;
  form: RequestForm;
  state: RequestState;
  hidden: boolean;
  createdAt: number;
  expiresAt: number;
  closedAt?: number;
}

interface Raw {
  id: string;
  owner: number;
  target: number;
  entry: string;
  form: string;
  state: string;
  hidden: number;
  created_at: number;
  expires_at: number;
  closed_at: number | null;
}

const toRow = (r: Raw): RequestRow => ({
  id: r.id,
  owner: Number(r.owner) as AccountId,
  target: Number(r.target) as AccountId,
  entry: r.entry,
  form: r.form as RequestForm,
  state: r.state as RequestState,
  hidden: Number(r.hidden) === 1,
  createdAt: Number(r.created_at),
  expiresAt: Number(r.expires_at),
  ...(r.closed_at === null ? {} : { closedAt: Number(r.closed_at) }),
});

const COLS = "id, owner, target, entry, form, state, hidden, created_at, expires_at, closed_at";
const GET = `SELECT ${COLS} FROM book_requests WHERE id = :id`;
const INSERT = `INSERT INTO book_requests (${COLS})
  VALUES (:id, :owner, :target, :entry, :form, 'open', :hidden, :now, :expires, NULL) ON CONFLICT DO NOTHING`;
const OPEN_BETWEEN = `SELECT ${COLS} FROM book_requests WHERE owner = :owner AND target = :target AND state = 'open'`;
const CLOSE = `UPDATE book_requests SET state = :state, closed_at = :now WHERE id = :id AND state = 'open'`;
const HIDE = "UPDATE book_requests SET hidden = 1 WHERE id = :id";
const COUNT_OPEN_FROM = "SELECT COUNT(*) AS n FROM book_requests WHERE owner = :owner AND state = 'open'";
const COUNT_OPEN_TO = "SELECT COUNT(*) AS n FROM book_requests WHERE target = :target AND state = 'open'";
const COUNT_SINCE = "SELECT COUNT(*) AS n FROM book_requests WHERE owner = :owner AND created_at > :since";
const OLDEST_SINCE = `SELECT MIN(created_at) AS t FROM book_requests WHERE owner = :owner AND created_at > :since`;
const INCOMING = `SELECT ${COLS} FROM book_requests
  WHERE target = :target AND state = 'open' AND hidden = 0 AND expires_at > :now ORDER BY created_at, id`;
const OUTGOING = `SELECT ${COLS} FROM book_requests
  WHERE owner = :owner AND state = 'open' ORDER BY created_at, id`;
const EXPIRED = `SELECT ${COLS} FROM book_requests WHERE state = 'open' AND expires_at <= :now
  ORDER BY expires_at, id LIMIT :n`;
const OPEN_FOR_ENTRY = `SELECT ${COLS} FROM book_requests WHERE entry = :entry AND state = 'open'`;
const PRUNE = "DELETE FROM book_requests WHERE closed_at IS NOT NULL AND closed_at <= :before";
const ERASE = "DELETE FROM book_requests WHERE owner = :me OR target = :me";

const count = async (q: Sql, sql: string, p: Record<string, number>): Promise<number> =>
  Number((await q.get<{ n: number }>(sql, p))?.n ?? 0);

export const requestRepo = (q: Sql) => ({
  get: async (id: string): Promise<RequestRow | undefined> => {
    const r = await q.get<Raw>(GET, { id });
    return r ? toRow(r) : undefined;
  },
  /** False when (owner, target) already has an open request (the partial unique index decided). */
  insert: async (r: Omit<RequestRow, "state" | "closedAt">): Promise<boolean> =>
    (
      await q.run(INSERT, {
        id: r.id,
        owner: r.owner,
        target: r.target,
        entry: r.entry,
        form: r.form,
        hidden: r.hidden ? 1 : 0,
        now: r.createdAt,
        expires: r.expiresAt,
      })
    ).changes === 1,
  openBetween: async (owner: AccountId, target: AccountId): Promise<RequestRow | undefined> => {
    const r = await q.get<Raw>(OPEN_BETWEEN, { owner, target });
    return r ? toRow(r) : undefined;
  },
  /** Closes an open request; false when it was not open (someone else closed it first). */
  close: async (id: string, state: Exclude<RequestState, "open">, now: number): Promise<boolean> =>
    (await q.run(CLOSE, { id, state, now })).changes === 1,
  hide: (id: string) => q.run(HIDE, { id }),
  countOpenFrom: (owner: AccountId) => count(q, COUNT_OPEN_FROM, { owner }),
  countOpenTo: (target: AccountId) => count(q, COUNT_OPEN_TO, { target }),
  /** Requests `owner` made after `since` (any state: the hourly limit counts what was sent). */
  countSince: (owner: AccountId, since: number) => count(q, COUNT_SINCE, { owner, since }),
  oldestSince: async (owner: AccountId, since: number): Promise<number | undefined> => {
    const t = (await q.get<{ t: number | null }>(OLDEST_SINCE, { owner, since }))?.t;
    return t === null || t === undefined ? undefined : Number(t);
  },
  incoming: async (target: AccountId, now: number): Promise<RequestRow[]> =>
    (await q.all<Raw>(INCOMING, { target, now })).map(toRow),
  outgoing: async (owner: AccountId): Promise<RequestRow[]> =>
    (await q.all<Raw>(OUTGOING, { owner })).map(toRow),
  expired: async (now: number, n: number): Promise<RequestRow[]> =>
    (await q.all<Raw>(EXPIRED, { now, n })).map(toRow),
  openForEntry: async (entry: string): Promise<RequestRow[]> =>
    (await q.all<Raw>(OPEN_FOR_ENTRY, { entry })).map(toRow),
  prune: async (before: number): Promise<number> => (await q.run(PRUNE, { before })).changes,
  erase: async (me: AccountId): Promise<void> => {
    await q.run(ERASE, { me });
  },
});

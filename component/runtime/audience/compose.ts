/**
 * The audience composer (docs/REDESIGN.md §2.5.1–2.5.2): every registered path (bindings now, groups later) is a
 * few SQL expressions, and each use — forward holders (fan-out), inverse (sync, contacts), the pair's policies
 * (rendering) and visibility (tombstones) — is one statement with a `UNION ALL` branch per path. The texts are
 * built once per path list and kept, so the executor's statement cache sees a handful of constant texts.
 *
 * Path expressions are pasted into SQL: they come from the features' code, never from input. Their FROM aliases
 * must not start with `aud_` (the composer's own aliases), so a correlated use cannot capture them.
 */
import type { SharePolicy } from "../../../stanzas/model/policy.js";
import type { AccountId, Dialect, Seq, Sql } from "../../../storage/store.js";
import type { AudiencePath, SyncChange, SyncPage } from "./api.js";

/** A query that yields no rows, for a registry with no path (valid on both backends). */
const NO_HOLDERS = "SELECT CAST(NULL AS INTEGER) AS holder WHERE 1 = 0";
const NO_OWNERS =
  "SELECT CAST(NULL AS INTEGER) AS owner, CAST(NULL AS TEXT) AS policy, CAST(NULL AS INTEGER) AS seq, 0 AS path WHERE 1 = 0";

/** Checks a registry once, at build time: a bad path fails the process start, not a request. */
export function checkPaths(paths: readonly AudiencePath[]): void {
  const names = new Set<string>();
  for (const p of paths) {
    if (!/^[a-z][a-z0-9-]*$/.test(p.name)) throw new Error(`audience path name ${JSON.stringify(p.name)}`);
    if (names.has(p.name)) throw new Error(`audience path ${p.name} registered twice`);
    names.add(p.name);
    for (const k of ["from", "owner", "holder", "policy", "seq", "where", "push"] as const) {
      const v = p[k];
      if (v === undefined && (k === "where" || k === "push")) continue;
      if (typeof v !== "string" || v.trim() === "" || v.includes(";")) {
        throw new Error(`audience path ${p.name}: ${k} must be one SQL expression`);
      }
    }
    if (/\baud_/i.test(p.from)) throw new Error(`audience path ${p.name}: aliases may not start with aud_`);
    const t = p.tombstones;
    if (t === undefined) continue;
    for (const k of ["from", "holder", "owner", "seq", "where"] as const) {
      const v = t[k];
      if (v === undefined && k === "where") continue;
      if (typeof v !== "string" || v.trim() === "" || v.includes(";")) {
        throw new Error(`audience path ${p.name}: tombstones.${k} must be one SQL expression`);
      }
    }
    if (/\baud_/i.test(t.from))
      throw new Error(`audience path ${p.name}: tombstones aliases may not start with aud_`);
  }
}

/**
 * The holder's tombstones newer than `:since` as `owner, seq` rows (`:holder`, `:since`): the `tombstones` table,
 * plus every path's lazy ones (AudiencePath.tombstones), the newest per owner. Every use compares the seq with
 * `:since` (a tombstone or mark at or before it changes nothing a client has not seen), so each branch is cut there
 * first: the table's branch is a range of its (holder, seq) index, as before lazy tombstones, and the GROUP BY sees
 * only the newer rows. Without lazy tombstones it is the table itself.
 */
export function tombstonesOfHolderSql(paths: readonly AudiencePath[]): string {
  const explicit =
    "SELECT aud_t0.owner AS owner, aud_t0.seq AS seq FROM tombstones aud_t0 WHERE aud_t0.holder = :holder AND aud_t0.seq > :since";
  const lazy = paths.flatMap((p) => {
    const t = p.tombstones;
    if (!t) return [];
    const c = `${t.holder} = :holder AND ${t.owner} <> ${t.holder} AND ${t.seq} > :since`;
    return [
      `SELECT ${t.owner} AS owner, ${t.seq} AS seq FROM ${t.from} WHERE ${t.where ? `${c} AND (${t.where})` : c}`,
    ];
  });
  if (lazy.length === 0) return explicit;
  return `SELECT aud_z.owner AS owner, MAX(aud_z.seq) AS seq FROM (${[explicit, ...lazy].join(" UNION ALL ")}) aud_z GROUP BY aud_z.owner`;
}

const cond = (p: AudiencePath, c: string): string => (p.where ? `${c} AND (${p.where})` : c);

/**
 * Forward audience as one SELECT yielding column `holder`: every holder of `:<ownerParam>` over every path, each
 * once, the owner never. S4's fan-out (`appendToAudience`) embeds it as `FROM (<this>) aud`; it binds the same
 * parameter. Cached per (path list, parameter name).
 */
export function audienceHoldersSql(paths: readonly AudiencePath[], ownerParam = "owner"): string {
  let byParam = holdersCache.get(paths);
  if (!byParam) holdersCache.set(paths, (byParam = new Map()));
  let sql = byParam.get(ownerParam);
  if (sql === undefined) {
    checkPaths(paths);
    const o = `:${ownerParam}`;
    const branches = paths.map(
      (p) =>
        `SELECT ${p.holder} AS holder FROM ${p.from} WHERE ${cond(p, `${p.owner} = ${o}`)}${p.push ? ` AND (${p.push})` : ""}`,
    );
    sql =
      branches.length === 0
        ? NO_HOLDERS
        : `SELECT DISTINCT aud_f.holder AS holder FROM (${branches.join(" UNION ALL ")}) aud_f WHERE aud_f.holder <> ${o}`;
    byParam.set(ownerParam, sql);
  }
  return sql;
}
const holdersCache = new WeakMap<readonly AudiencePath[], Map<string, string>>();

/** The seq of a card: the runtime reads the cards table (§2.6) for "the card or a path changed" (sync). */
const CARD_SEQ = "SELECT c.account_id AS owner, c.seq AS seq FROM cards c";

// The sync page types are public (api.ts): features/cards/sync.ts reads them through AudienceRead.
export type { SyncChange, SyncPage };

/** The composed statements of one path registry (built once per process; every text constant afterwards). */
export class AudienceSql {
  /** `:owner` → DISTINCT `holder` rows: every holder, whether or not the fan-out pushes to it. */
  readonly holders: string;
  /** `:holder` → `owner, policy, seq, path` rows: one per path row through which the holder sees the owner. */
  readonly inverse: string;
  /** `:owner, :holder` → `policy, path` rows, in registration order. */
  readonly pair: string;
  /** `:holder, :since, :limit` → `owner, changed` (visible owners with a card whose card, path or view changed). */
  readonly changed: string;
  /** `:holder, :since, :limit` → `owner, changed, removed` (changed plus tombstoned owners), seq-ordered. */
  readonly sync: string;
  /** `:holder, :at, :since` (= at − 1) → `owner, changed, removed` of one seq (a page never cuts through a seq). */
  readonly syncAt: string;
  /** `:holder, :since` → `owner, seq`: the holder's tombstones after since, explicit and lazy (newest per owner). */
  readonly tombstones: string;

  /** pairsOf's text per dialect (it embeds the dialect's JSON id list). */
  private readonly pairsText = new Map<string, string>();

  /** `:holder, :owners` (a JSON array of ids) → `owner, policy, path` rows: pair for many owners at once. */
  pairsOf(d: Dialect): string {
    let text = this.pairsText.get(d.backend);
    if (text === undefined) {
      const ids = d.jsonIds("owners");
      const branches = this.paths.map(
        (p, i) =>
          `SELECT ${p.owner} AS owner, ${p.policy} AS policy, ${i} AS path FROM ${p.from} WHERE ${cond(p, `${p.owner} IN (${ids}) AND ${p.holder} = :holder`)}`,
      );
      text =
        branches.length === 0
          ? NO_OWNERS
          : `SELECT aud_m.owner AS owner, aud_m.policy AS policy, aud_m.path AS path FROM (${branches.join(" UNION ALL ")}) aud_m WHERE aud_m.owner <> :holder ORDER BY aud_m.owner, aud_m.path`;
      this.pairsText.set(d.backend, text);
    }
    return text;
  }

  constructor(readonly paths: readonly AudiencePath[]) {
    checkPaths(paths);
    this.tombstones = tombstonesOfHolderSql(paths);
    // Everyone who sees the owner's card (export, admin counts): the fan-out's `push` conditions do not apply.
    this.holders = audienceHoldersSql(paths.map((p) => ({ ...p, push: undefined })));
    const inv = paths.map(
      (p, i) =>
        `SELECT ${p.owner} AS owner, ${p.policy} AS policy, ${p.seq} AS seq, ${i} AS path FROM ${p.from} WHERE ${cond(p, `${p.holder} = :holder`)}`,
    );
    this.inverse =
      inv.length === 0
        ? NO_OWNERS
        : `SELECT aud_i.owner AS owner, aud_i.policy AS policy, aud_i.seq AS seq, aud_i.path AS path FROM (${inv.join(" UNION ALL ")}) aud_i WHERE aud_i.owner <> :holder`;
    const pair = paths.map(
      (p, i) =>
        `SELECT ${p.policy} AS policy, ${i} AS path FROM ${p.from} WHERE ${cond(p, `${p.owner} = :owner AND ${p.holder} = :holder`)}`,
    );
    this.pair =
      pair.length === 0
        ? "SELECT CAST(NULL AS TEXT) AS policy, 0 AS path WHERE 1 = 0"
        : `SELECT aud_p.policy AS policy, aud_p.path AS path FROM (${pair.join(" UNION ALL ")}) aud_p WHERE :owner <> :holder ORDER BY aud_p.path`;
    // A visible owner changed for the holder when its card, one of its paths, or the holder's view of it (the
    // seq a closed path left in tombstones while another still shows it, DECISIONS.md) moved past `since`.
    const greatest = (a: string, b: string, c: string): string =>
      `CASE WHEN ${a} >= ${b} AND ${a} >= ${c} THEN ${a} WHEN ${b} >= ${c} THEN ${b} ELSE ${c} END`;
    const visibleChanged =
      `SELECT aud_g.owner AS owner, ${greatest("aud_g.card_seq", "aud_g.path_seq", "aud_g.mark_seq")} AS changed ` +
      `FROM (SELECT aud_v.owner AS owner, MAX(aud_v.seq) AS path_seq, aud_c.seq AS card_seq, ` +
      `COALESCE(aud_t.seq, 0) AS mark_seq ` +
      `FROM (${this.inverse}) aud_v JOIN (${CARD_SEQ}) aud_c ON aud_c.owner = aud_v.owner ` +
      `LEFT JOIN (${this.tombstones}) aud_t ON aud_t.owner = aud_v.owner ` +
      `GROUP BY aud_v.owner, aud_c.seq, aud_t.seq) aud_g`;
    this.changed =
      `SELECT aud_x.owner AS owner, aud_x.changed AS changed FROM (${visibleChanged}) aud_x ` +
      `WHERE aud_x.changed > :since ORDER BY aud_x.changed, aud_x.owner LIMIT :limit`;
    const removed =
      `SELECT aud_r.owner AS owner, aud_r.seq AS changed, 1 AS removed FROM (${this.tombstones}) aud_r ` +
      `WHERE NOT ${this.visible("aud_r.owner", ":holder")}`;
    const all =
      `SELECT aud_x.owner AS owner, aud_x.changed AS changed, 0 AS removed FROM (${visibleChanged}) aud_x ` +
      `UNION ALL ${removed}`;
    this.sync =
      `SELECT aud_s.owner AS owner, aud_s.changed AS changed, aud_s.removed AS removed FROM (${all}) aud_s ` +
      `WHERE aud_s.changed > :since ORDER BY aud_s.changed, aud_s.owner LIMIT :limit`;
    this.syncAt =
      `SELECT aud_s.owner AS owner, aud_s.changed AS changed, aud_s.removed AS removed FROM (${all}) aud_s ` +
      `WHERE aud_s.changed = :at ORDER BY aud_s.owner`;
  }

  /** A correlated condition: `holderExpr` sees `ownerExpr` through some path (for tombstones and sync). */
  visible(ownerExpr: string, holderExpr: string): string {
    if (this.paths.length === 0) return "(1 = 0)";
    const branches = this.paths.map(
      (p) =>
        `EXISTS (SELECT 1 FROM ${p.from} WHERE ${cond(p, `${p.owner} = ${ownerExpr} AND ${p.holder} = ${holderExpr}`)})`,
    );
    return `(${ownerExpr} <> ${holderExpr} AND (${branches.join(" OR ")}))`;
  }
}

/** A stored policy: JSON SharePolicy text, or NULL for "share everything". */
export function parsePolicy(v: unknown): SharePolicy | null {
  if (v === null || v === undefined) return null;
  const p: unknown = JSON.parse(String(v));
  if (typeof p !== "object" || p === null || Array.isArray(p))
    throw new Error("audience: stored policy is not an object");
  return p as SharePolicy;
}

/** The read half over one SQL connection (a unit of work's tx or a read snapshot). */
export class AudienceReader {
  constructor(
    protected readonly q: AudienceSql,
    protected readonly sql: Sql,
  ) {}

  async policies(owner: AccountId, holder: AccountId): Promise<Array<SharePolicy | null>> {
    const rows = await this.sql.all<{ policy: unknown }>(this.q.pair, { owner, holder });
    return rows.map((r) => parsePolicy(r.policy));
  }

  async policiesOf(
    owners: readonly AccountId[],
    holder: AccountId,
  ): Promise<Map<AccountId, Array<SharePolicy | null>>> {
    const out = new Map<AccountId, Array<SharePolicy | null>>();
    if (owners.length === 0) return out;
    const rows = await this.sql.all<{ owner: number; policy: unknown }>(this.q.pairsOf(this.sql.dialect), {
      holder,
      owners: JSON.stringify(owners),
    });
    for (const r of rows) {
      const owner = Number(r.owner) as AccountId;
      const list = out.get(owner) ?? [];
      list.push(parsePolicy(r.policy));
      out.set(owner, list);
    }
    return out;
  }

  async holders(owner: AccountId): Promise<AccountId[]> {
    const rows = await this.sql.all<{ holder: number }>(`${this.q.holders} ORDER BY holder`, { owner });
    return rows.map((r) => Number(r.holder) as AccountId);
  }

  async changedFor(
    holder: AccountId,
    since: Seq,
    limit: number,
  ): Promise<Array<{ owner: AccountId; changed: Seq }>> {
    const rows = await this.sql.all<{ owner: number; changed: number }>(this.q.changed, {
      holder,
      since,
      limit: boundedLimit(limit),
    });
    return rows.map((r) => ({ owner: Number(r.owner) as AccountId, changed: Number(r.changed) }));
  }

  /**
   * One pull-sync page (§2.5, contract case 45): visible owners whose card, path or view changed after `since`
   * and owners who left sight (tombstones), in one stream by seq. A page never ends inside a seq — when the cut
   * would fall there, the page stops before it, or, if that seq alone fills the page, includes all of it — so
   * the token of a cut page is a correct continuation even when one seq names several owners (a group join).
   */
  async syncPage(holder: AccountId, since: Seq, limit: number): Promise<SyncPage> {
    const r = this.sql;
    const lim = boundedLimit(limit);
    const rows = await r.all<SyncRow>(this.q.sync, { holder, since, limit: lim + 1 });
    let page = rows.map(toChange);
    const more = page.length > lim;
    if (more) {
      const next = page[lim] as SyncChange;
      page = page.slice(0, lim);
      if (page[page.length - 1]?.seq === next.seq) {
        const before = page.filter((c) => c.seq < next.seq);
        page =
          before.length > 0
            ? before
            : (await r.all<SyncRow>(this.q.syncAt, { holder, at: next.seq, since: next.seq - 1 })).map(
                toChange,
              );
      }
    }
    const last = page[page.length - 1];
    const token = more && last ? last.seq : await currentSeq(r);
    return { changes: page, more, token };
  }
}

interface SyncRow {
  owner: number;
  changed: number;
  removed: number;
}
const toChange = (r: SyncRow): SyncChange => ({
  owner: Number(r.owner) as AccountId,
  seq: Number(r.changed),
  removed: Number(r.removed) === 1,
});

/** The newest committed change number (counters 'seq', §2.4): the sync token of a complete page. */
export async function currentSeq(r: Sql): Promise<Seq> {
  const row = await r.get<{ value: number }>("SELECT value FROM counters WHERE name = 'seq'");
  return Number(row?.value ?? 0);
}

/** Pages are bounded by the caller's limit; a non-positive or absurd one is a bug, not a request. */
function boundedLimit(limit: number): number {
  if (!Number.isInteger(limit) || limit < 1 || limit > 100_000)
    throw new Error(`audience: page limit ${limit}`);
  return limit;
}

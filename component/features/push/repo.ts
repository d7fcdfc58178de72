/**
 * The push feature's tables on schema 2000 (docs/REDESIGN.md §2.6 "features/push"): push_nodes (XEP-0357 nodes,
 * one per device) and push_sends (the hourly budget's log per token), plus the installation secrets in meta
 * (`secret:<name>`, e.g. the push-ref key). Portable SQL (§2.1): the same text runs on SQLite and PostgreSQL.
 *
 * push_sends is capped by time: every insert deletes the rows that left the budget window, so the table holds
 * at most one hour of sends (budget × devices rows), as today's push_sent does.
 */
import { randomBytes } from "node:crypto";
import type { AccountId, DeviceKey, Sql } from "../../../storage/store.js";

/** The budget window: sends older than this no longer count (and are deleted). */
export const BUDGET_WINDOW_MS = 3_600_000;

export interface PushNodeRow {
  node: string;
  device: DeviceKey;
  secret: string;
  createdAt: number;
}

const ENSURE_SECRET = "INSERT INTO meta (key, value) VALUES (:key, :value) ON CONFLICT (key) DO NOTHING";
const SECRET = "SELECT value FROM meta WHERE key = :key";
const SENT_SINCE =
  "SELECT COUNT(*) AS n, MIN(sent_at) AS oldest FROM push_sends WHERE token = :token AND sent_at >= :since";
const RECORD_SEND = "INSERT INTO push_sends (token, sent_at) VALUES (:token, :now)";
const PRUNE_SENDS = "DELETE FROM push_sends WHERE sent_at < :before";
const UPSERT_NODE = `
INSERT INTO push_nodes (node, device, secret, created_at) VALUES (:node, :device, :secret, :now)
ON CONFLICT (device) DO UPDATE SET node = excluded.node, secret = excluded.secret, created_at = excluded.created_at`;
const NODE = "SELECT node, device, secret, created_at FROM push_nodes WHERE node = :node";
/** The node's device as the accounts part names it (account, client device id): nodes are keyed by device key. */
const NODE_DEVICE = `
SELECT d.account_id, d.device_id FROM push_nodes n JOIN devices d ON d.id = n.device WHERE n.node = :node`;

// Account deletion (issue 14): the account's budget log (by its devices' tokens) and nodes. Run before the
// runtime deletes the devices (the nodes would go by foreign key; the budget log has no key to the device).
const DELETE_SENDS_OF = `DELETE FROM push_sends WHERE token IN
  (SELECT push_token FROM devices WHERE account_id = :account AND push_token IS NOT NULL)`;
const DELETE_NODES_OF =
  "DELETE FROM push_nodes WHERE device IN (SELECT id FROM devices WHERE account_id = :account)";

export const pushRepo = (q: Sql) => ({
  /** The account's push_sends (by its devices' tokens) and push_nodes rows; returns how many went. */
  async deleteAccountRows(account: AccountId): Promise<number> {
    return (
      (await q.run(DELETE_SENDS_OF, { account })).changes +
      (await q.run(DELETE_NODES_OF, { account })).changes
    );
  },

  /** A per-installation secret (base64 of 32 random bytes), created on first use; every process reads the same. */
  async secret(name: string): Promise<string> {
    const key = `secret:${name}`;
    await q.run(ENSURE_SECRET, { key, value: randomBytes(32).toString("base64") });
    const r = await q.get<{ value: string }>(SECRET, { key });
    if (!r) throw new Error(`meta ${key} missing right after its insert`);
    return String(r.value);
  },

  /** Sends to `token` at or after `since`: how many, and the oldest one's time (when the window frees a slot). */
  async sentSince(token: string, since: number): Promise<{ n: number; oldest?: number }> {
    const r = await q.get<{ n: number; oldest: number | null }>(SENT_SINCE, { token, since });
    const n = Number(r?.n ?? 0);
    return n === 0 || r?.oldest === null || r?.oldest === undefined ? { n } : { n, oldest: Number(r.oldest) };
  },

  /** Logs sends (one row per accepted notice) and drops the rows that left the window. */
  async recordSends(tokens: readonly string[], now: number): Promise<void> {
    for (const token of tokens) await q.run(RECORD_SEND, { token, now });
    if (tokens.length > 0) await q.run(PRUNE_SENDS, { before: now - BUDGET_WINDOW_MS });
  },

  /** A new node for the device (one per device: registering again replaces node id and secret). */
  async upsertNode(
    n: { node: string; device: DeviceKey; secret: string },
    now: number,
  ): Promise<PushNodeRow> {
    await q.run(UPSERT_NODE, { ...n, now });
    return { ...n, createdAt: now };
  },

  async node(node: string): Promise<PushNodeRow | undefined> {
    const r = await q.get<{ node: string; device: number; secret: string; created_at: number }>(NODE, {
      node,
    });
    return r
      ? {
          node: String(r.node),
          device: Number(r.device) as DeviceKey,
          secret: String(r.secret),
          createdAt: Number(r.created_at),
        }
      : undefined;
  },

  async nodeDevice(node: string): Promise<{ account: AccountId; deviceId: string } | undefined> {
    const r = await q.get<{ account_id: number; device_id: string }>(NODE_DEVICE, { node });
    return r ? { account: Number(r.account_id) as AccountId, deviceId: String(r.device_id) } : undefined;
  },
});

export type PushRepo = ReturnType<typeof pushRepo>;

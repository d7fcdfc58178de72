/**
 * A user's own data on the new core (issue 14; docs/PROTOCOL.md §18): the export document (every row of the 2000
 * schema about the account, tables.ts) and the erasure unit of work. Plain functions over `Reader`/`Uow`, so the
 * running module (index.ts) and `cardlink export-user` / `delete-user` (component/runtime/ctl.ts, through
 * component/features.ts and an offline core without a link) share them.
 *
 * Deletion is ONE unit of work: it emits `account.deleting`, whose in-tx handlers (cards, exchange, push, the
 * accounts cache) remove each feature's rows — exchange appends `unbound` to every peer there, as its unbind does
 * — and then takes the runtime's rows (tables.ts ERASE_RUNTIME). An offline holder is told when they come back,
 * also when the deletion ran from the command line while the service was down.
 */
import { createHash } from "node:crypto";
import type { Card } from "../../../stanzas/model/card.js";
import { unionView } from "../../../stanzas/model/policy.js";
import { cardToVcf } from "../../../stanzas/vcf.js";
import { firstValue, formElement } from "../../../stanzas/dataforms.js";
import type { Element } from "../../../stanzas/xml.js";
import type { AccountId } from "../../../storage/store.js";
import type { BareJid } from "../../runtime/accounts/api.js";
import type { CommandStep } from "../../runtime/adhoc.js";
import type { StanzaBudget } from "../../runtime/budget.js";
import type { ReadContext, Reader, Uow } from "../../runtime/uow.js";
import { getCard } from "../cards/api.js";
import { USER_TABLES, eraseRuntimeRows, erasableCounts, pendingUnboundLanes, userRows } from "./tables.js";

/** The `format` of an export document (docs/PROTOCOL.md §18): bumped only if a field changes meaning. */
export const EXPORT_FORMAT = "urn:cardlink:export:0";
export const CMD_EXPORT = "urn:cardlink:cmd:export-data";
export const CMD_DELETE = "urn:cardlink:cmd:delete-data";
/** Most held cards a book export reads (far above any real address book; every per-user list here is capped). */
const BOOK_MAX = 100_000;

type Json = Record<string, unknown>;

export interface ExportDoc {
  format: typeof EXPORT_FORMAT;
  jid: string;
  exportedAt: string;
  /** Every row about the user, per table, columns as stored (secrets redacted, JSON columns parsed, JIDs added). */
  tables: Record<string, Json[]>;
  /** The user's card and the cards they hold (as they see them), RFC 6350 text. */
  vcf: { card: string | null; book: Array<{ owner: string; vcf: string }> };
}

/** What a deletion did: as the legacy Store.deleteUser's result (rows per table, the JIDs told). */
export interface DeleteResult {
  deleted: number;
  rows: Record<string, number>;
  peers: string[];
}

/** A push token shown by its last 6 characters and its length: enough to recognise a device, useless to send. */
export function redactToken(t: unknown): string | null {
  if (t === null || t === undefined) return null;
  const s = String(t);
  return `…${s.slice(-6)} (${s.length} chars, redacted)`;
}

const JSON_COLUMNS = new Set([
  "card",
  "policy",
  "a_devices",
  "b_devices",
  "payload",
  "body",
  "recent",
  "published",
]);
const TIME_COLUMNS = /(_at|^since)$/;
/** Columns holding an account id, and the name of the JID column shown next to each. */
const ACCOUNT_COLUMNS: Record<string, string> = {
  account_id: "account_jid",
  a: "a_jid",
  b: "b_jid",
  owner: "owner_jid",
  holder: "holder_jid",
  blocked: "blocked_jid",
  from_account: "from_jid",
  to_account: "to_jid",
  subject_account: "subject_jid",
  invitee: "invitee_jid",
  inviter: "inviter_jid",
  exempt: "exempt_jid",
};
/** Account-id columns whose name means something else in other tables (jobs.target is a push target). */
const TABLE_ACCOUNT_COLUMNS: Record<string, Record<string, string>> = {
  accounts: { id: "jid" },
  book_requests: { target: "target_jid" },
};
const accountColumn = (table: string, k: string): string | undefined =>
  TABLE_ACCOUNT_COLUMNS[table]?.[k] ?? ACCOUNT_COLUMNS[k];

/** A job body's secrets: the push token (as the old push_queue.token column) and nothing else is a secret. */
function redactBody(v: unknown): unknown {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return v;
  const out: Json = { ...(v as Json) };
  if ("token" in out) out.token = redactToken(out.token);
  return out;
}

/** One stored row as exported: secrets redacted, JSON columns parsed, times as ISO 8601, JIDs beside ids. */
function exportRow(table: string, r: Json, jids: Map<AccountId, BareJid>): Json {
  const out: Json = {};
  for (const [k, v] of Object.entries(r)) {
    if (v === null || v === undefined) out[k] = null;
    else if ((table === "devices" && k === "push_token") || k === "token") out[k] = redactToken(v);
    // code_hash: a service's one-time verification code (features/linked), hashed; still a secret while it lives.
    else if (k === "push_key" || k === "secret" || k === "code_hash") out[k] = "(set, redacted)";
    else if (JSON_COLUMNS.has(k) && typeof v === "string") {
      let parsed: unknown = v;
      try {
        parsed = JSON.parse(v) as unknown;
      } catch {
        // kept as text: a column that is not JSON after all is still the user's data
      }
      out[k] = k === "body" ? redactBody(parsed) : parsed;
    } else if (TIME_COLUMNS.test(k) && typeof v === "number" && v > 0) out[k] = new Date(v).toISOString();
    else out[k] = typeof v === "bigint" ? Number(v) : v;
    const jidCol = accountColumn(table, k);
    if (jidCol !== undefined && v !== null && v !== undefined) {
      out[jidCol] = jids.get(Number(v) as AccountId) ?? null;
    }
  }
  return out;
}

/** The cards `me` holds, each through the union of the policies of every path that shows it (as sync shows). */
async function book(r: ReadContext, me: AccountId): Promise<ExportDoc["vcf"]["book"]> {
  const page = await r.audience.syncPage(me, 0, BOOK_MAX);
  const owners = [...new Set(page.changes.filter((c) => !c.removed).map((c) => c.owner))];
  const jids = await r.accounts.jidsOf(owners);
  const out: ExportDoc["vcf"]["book"] = [];
  for (const owner of owners) {
    const jid = jids.get(owner);
    const stored = await getCard(r.read, owner);
    const policies = await r.audience.policies(owner, me);
    if (jid === undefined || !stored || policies.length === 0) continue;
    out.push({ owner: jid, vcf: cardToVcf(unionView(stored.card, policies)) });
  }
  return out.sort((a, b) => (a.owner < b.owner ? -1 : 1));
}

/** Everything cardlink holds about `jid`, in one read snapshot. */
export function buildExport(read: Reader, jid: BareJid, now = Date.now()): Promise<ExportDoc> {
  return read("userdata.export", async (r) => {
    const me = await r.accounts.resolve(jid);
    const empty: ExportDoc = {
      format: EXPORT_FORMAT,
      jid,
      exportedAt: new Date(now).toISOString(),
      tables: Object.fromEntries(USER_TABLES.map((t) => [t.name, []])),
      vcf: { card: null, book: [] },
    };
    if (me === undefined) return empty;
    const raw = await userRows(r.read, me);
    const ids = new Set<AccountId>();
    for (const [t, rows] of Object.entries(raw)) {
      for (const row of rows) {
        for (const [k, v] of Object.entries(row)) {
          if (accountColumn(t, k) !== undefined && v !== null && v !== undefined)
            ids.add(Number(v) as AccountId);
        }
      }
    }
    const jids = await r.accounts.jidsOf([...ids]);
    for (const [t, rows] of Object.entries(raw)) empty.tables[t] = rows.map((row) => exportRow(t, row, jids));
    const mine = await getCard(r.read, me);
    empty.vcf = { card: mine ? cardToVcf(mine.card as Card) : null, book: await book(r, me) };
    return empty;
  });
}

/**
 * Tables that every known account has a row in (its identity and shared cursor), also a deleted one: an account
 * with nothing else stored is "nothing about the user", as an unknown JID is.
 */
const SKELETON = new Set(["accounts", "identifiers", "stream_cursors"]);

/** True when nothing but the account's skeleton is stored about the user. */
export function isEmptyExport(doc: ExportDoc): boolean {
  return (
    Object.entries(doc.tables).every(([t, rows]) => rows.length === 0 || SKELETON.has(t)) &&
    doc.vcf.card === null &&
    doc.vcf.book.length === 0
  );
}

/**
 * Erases the user's rows in one unit of work: `account.deleting` (each feature's rows, `unbound` to every peer)
 * then the runtime's rows. Counts are what the unit of work removed per table (tables.ts). An unknown JID
 * deletes nothing.
 */
export function deleteAccount(uow: Uow, jid: BareJid): Promise<DeleteResult> {
  return uow("userdata.delete", async (u) => {
    const me = await u.accounts.resolve(jid);
    if (me === undefined) return { deleted: 0, rows: {}, peers: [] };
    await u.tx.lockAccount(me);
    const seq = await u.seq();
    const before = await erasableCounts(u.tx, me);
    // Who is told: everyone who sees the card now (every path), and anyone an earlier unbind's notice still
    // waits for (it stays, and is delivered, as today's re-written notice).
    const peers = new Set<AccountId>([
      ...(await u.audience.holders(me)),
      ...(await pendingUnboundLanes(u.tx, me)),
    ]);
    peers.delete(me);
    await u.emit("account.deleting", { account: me });
    await eraseRuntimeRows(u.tx, me, seq);
    const after = await erasableCounts(u.tx, me);
    const rows: Record<string, number> = {};
    for (const [t, n] of Object.entries(before)) rows[t] = Math.max(0, n - (after[t] ?? 0));
    const jids = await u.accounts.jidsOf([...peers]);
    const told = [...peers].map((p) => jids.get(p)).filter((j): j is BareJid => j !== undefined);
    return {
      deleted: Object.values(rows).reduce((a, b) => a + b, 0),
      rows,
      peers: told.sort(),
    };
  });
}

/** The export as XEP-0050 result form fields (lines of the JSON document; the .vcf texts). */
export function exportForm(doc: ExportDoc, title: string): Element {
  const vcfLines = [doc.vcf.card, ...doc.vcf.book.map((b) => b.vcf)]
    .filter((v): v is string => v !== null)
    .join("")
    .split(/\r?\n/)
    .filter((l) => l !== "");
  const { vcf: _vcf, ...rest } = doc;
  return formElement({
    type: "result",
    formType: EXPORT_FORMAT,
    title,
    fields: [
      {
        var: "json",
        type: "text-multi",
        label: "Everything stored (JSON; join the lines)",
        values: JSON.stringify(rest, null, 1).split("\n"),
      },
      { var: "vcf", type: "text-multi", label: "Card and address book (.vcf)", values: vcfLines },
    ],
  });
}

/**
 * The export for an ad-hoc answer: the form if it fits in one stanza, else a completed step with an error note
 * naming the sizes and where the whole export can be had (a form cannot be paged).
 */
export function exportStep(
  doc: ExportDoc,
  budget: StanzaBudget,
  title: string,
  elsewhere: string,
): CommandStep {
  const form = exportForm(doc, title);
  // The <command/> wrapper (node, sessionid, status) is well under the list reserve.
  const bytes = budget.measure(form);
  if (bytes > budget.listBudget) {
    return {
      status: "completed",
      notes: [
        {
          type: "error",
          text: `The export is ${bytes} bytes, more than one answer can carry (${budget.listBudget}); ${elsewhere}`,
        },
      ],
    };
  }
  return { status: "completed", form };
}

/** Stable RSM uid of one export item: table order, table, a digest of the row (rows are distinct per table). */
export function itemUid(order: number, table: string, body: string): string {
  const h = createHash("sha256").update(body).digest("hex").slice(0, 16);
  return `${String(order).padStart(2, "0")}-${table}-${h}`;
}

/** The typed confirmation of the delete command, as today: trimmed, lower-cased. */
export const typedConfirmation = (values: Map<string, string[]>): string =>
  (firstValue(values, "confirm") ?? "").trim().toLowerCase();

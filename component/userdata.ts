/**
 * A user's own data: export everything cardlink holds about me (every row, as JSON, plus my card and the cards I
 * hold as .vcf) and delete it. Both as urn:cardlink:0 requests (<export/> pages with RSM, so any amount fits the
 * stanza budget; <delete-account/> needs confirm='my JID') and as XEP-0050 commands for generic clients (the
 * export answers in one form, or refuses with a note when it is over the budget). The same two functions serve
 * the admin commands and `cardlink export-user` / `delete-user` (through component/features.ts).
 *
 * Deletion tells everyone who held my card as an unbind (the `unbound` notice the exchange feature renders),
 * written to the outbox by the same transaction that erases the rows: an offline holder is told when they come
 * back, also when the deletion ran from the command line while the service was down.
 */
import { createHash } from "node:crypto";
import { StanzaError, badRequest, quote } from "../stanzas/errors.js";
import { firstValue, formElement, parseForm } from "../stanzas/dataforms.js";
import { NS } from "../stanzas/ns.js";
import { filterCard } from "../stanzas/model/policy.js";
import type { Card } from "../stanzas/model/card.js";
import { cardToVcf } from "../stanzas/vcf.js";
import { xml, type Element } from "../stanzas/xml.js";
import type { DeleteUserResult, OutboxItem, Store } from "../storage/store.js";
import type { AppContext, Feature } from "./runtime/context.js";
import type { CommandStep } from "./runtime/adhoc.js";
import type { StanzaBudget } from "./runtime/budget.js";
import { pageList } from "./runtime/paging.js";

/** The `format` of an export document (docs/PROTOCOL.md §18): bumped only if a field changes meaning. */
export const EXPORT_FORMAT = "urn:cardlink:export:0";
export const CMD_EXPORT = "urn:cardlink:cmd:export-data";
export const CMD_DELETE = "urn:cardlink:cmd:delete-data";
/** Most cards a book export reads (far above any real address book; every per-user list here is capped). */
const BOOK_MAX = 100_000;

type Json = Record<string, unknown>;

export interface ExportDoc {
  format: typeof EXPORT_FORMAT;
  jid: string;
  exportedAt: string;
  /** Every row about the user, per table, columns as stored (secrets redacted, JSON columns parsed). */
  tables: Record<string, Json[]>;
  /** The user's card and the cards they hold (as they see them), RFC 6350 text. */
  vcf: { card: string | null; book: Array<{ owner: string; vcf: string }> };
}

/** A push token shown by its last 6 characters and its length: enough to recognise a device, useless to send. */
export function redactToken(t: unknown): string | null {
  if (t === null || t === undefined) return null;
  const s = String(t);
  return `…${s.slice(-6)} (${s.length} chars, redacted)`;
}

const JSON_COLUMNS = new Set(["card", "policy", "a_devices", "b_devices", "payload", "alert", "data"]);
const TIME_COLUMNS = /(_at|^since)$/;

/** One stored row as exported: secrets redacted, JSON columns parsed, times as ISO 8601. */
function exportRow(table: string, r: Json): Json {
  const out: Json = {};
  for (const [k, v] of Object.entries(r)) {
    if (v === null || v === undefined) out[k] = null;
    else if ((table === "devices" && k === "push_token") || k === "token") out[k] = redactToken(v);
    else if (k === "push_key" || k === "secret") out[k] = "(set, redacted)";
    else if (JSON_COLUMNS.has(k) && typeof v === "string") {
      try {
        out[k] = JSON.parse(v) as unknown;
      } catch {
        out[k] = v;
      }
    } else if (TIME_COLUMNS.test(k) && typeof v === "number" && v > 0) out[k] = new Date(v).toISOString();
    else out[k] = v;
  }
  return out;
}

/** Everything cardlink holds about `jid`. */
export async function buildExport(store: Store, jid: string, now = Date.now()): Promise<ExportDoc> {
  const raw = await store.userRows(jid);
  const tables: Record<string, Json[]> = {};
  for (const [t, rows] of Object.entries(raw)) tables[t] = rows.map((r) => exportRow(t, r));
  const mine = await store.cards.get(jid);
  const held = await store.cards.sync(jid, 0, BOOK_MAX);
  const book: ExportDoc["vcf"]["book"] = [];
  for (const e of held.entries) {
    if (e.removed) continue;
    book.push({ owner: e.owner, vcf: cardToVcf(e.policy ? filterCard(e.card, e.policy) : e.card) });
  }
  book.sort((a, b) => (a.owner < b.owner ? -1 : 1));
  return {
    format: EXPORT_FORMAT,
    jid,
    exportedAt: new Date(now).toISOString(),
    tables,
    vcf: { card: mine ? cardToVcf(mine.card as Card) : null, book },
  };
}

/** True when nothing at all is stored about the user. */
export function isEmptyExport(doc: ExportDoc): boolean {
  return Object.values(doc.tables).every((rows) => rows.length === 0) && doc.vcf.book.length === 0;
}

/** The unbind notice each peer gets about a deleted account (rendered by the exchange feature's `unbound`). */
export const unbindNotices =
  (jid: string) =>
  (peers: string[]): OutboxItem[] =>
    peers.map((p) => ({ recipient: p, kind: "unbound", subject: jid, version: 1 }));

/** Erases the user's rows and queues the unbind notices, in one transaction. */
export function deleteAccount(store: Store, jid: string): Promise<DeleteUserResult> {
  return store.deleteUser(jid, unbindNotices(jid));
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
function itemUid(order: number, table: string, body: string): string {
  const h = createHash("sha256").update(body).digest("hex").slice(0, 16);
  return `${String(order).padStart(2, "0")}-${table}-${h}`;
}

export class UserData implements Feature {
  readonly name = "userdata";
  private app!: AppContext;

  attach(app: AppContext): void {
    this.app = app;
    app.metrics.describe(
      "cardlink_accounts_deleted_total",
      "users' data deleted over XMPP, by the user (self) or an admin",
    );
    const ns = NS.CARDLINK;
    app.router.iq("get", ns, "export", (c) => this.exportIq(c.user, c.payload));
    app.router.iq("set", ns, "delete-account", (c) => this.deleteIq(c.user, c.payload));

    app.adhoc.register({
      node: CMD_EXPORT,
      name: "Export my data",
      run: async (ctx) =>
        exportStep(
          await buildExport(app.store, ctx.user),
          app.budget,
          `Everything cardlink holds about ${ctx.user}`,
          "use the <export/> request (it pages) or ask an administrator for `cardlink export-user`.",
        ),
    });

    app.adhoc.register({
      node: CMD_DELETE,
      name: "Delete my data",
      run: async (ctx, req, state) => {
        if (!state) {
          return {
            status: "executing",
            state: { stage: 1 },
            form: formElement({
              type: "form",
              title: "Delete everything cardlink holds about you",
              instructions:
                "This removes your card, devices and every card exchange. Everyone who has your card is told " +
                "that you removed it. It cannot be undone. To confirm, type your address.",
              fields: [{ var: "confirm", type: "text-single", label: `Type ${ctx.user}`, required: true }],
            }),
          };
        }
        if (!req.form) throw badRequest("this step needs the submitted form");
        const typed = (firstValue(parseForm(req.form).values, "confirm") ?? "").trim().toLowerCase();
        if (typed !== ctx.user) {
          return {
            status: "completed",
            notes: [{ type: "warn", text: `Nothing deleted: the confirmation was not ${ctx.user}.` }],
          };
        }
        const r = await this.erase(ctx.user, "self");
        return {
          status: "completed",
          notes: [
            {
              type: "info",
              text: `Deleted ${r.deleted} records; ${r.peers.length} contact(s) are told you removed your card.`,
            },
          ],
        };
      },
    });
  }

  /** Deletes `jid`'s data, logs and counts it, and starts delivering the unbind notices. */
  async erase(jid: string, by: string): Promise<DeleteUserResult> {
    const r = await deleteAccount(this.app.store, jid);
    this.app.metrics.inc("cardlink_accounts_deleted_total", { by: by === "self" ? "self" : "admin" });
    this.app.log.info(
      { event: "account-deleted", jid, by, rows: r.deleted, peers: r.peers.length },
      "user data deleted",
    );
    if (r.peers.length) this.app.events.emit("outbox.enqueued", { recipients: r.peers });
    return r;
  }

  private async exportIq(user: string, el: Element): Promise<Element> {
    const doc = await buildExport(this.app.store, user);
    const items: Array<{ uid: string; el: Element }> = [];
    Object.entries(doc.tables).forEach(([table, rows], i) => {
      for (const row of rows) {
        const body = JSON.stringify(row);
        items.push({ uid: itemUid(i, table, body), el: xml("row", { table }, body) });
      }
    });
    if (doc.vcf.card !== null)
      items.push({ uid: `90-vcf-0`, el: xml("vcf", { owner: user, mine: "true" }, doc.vcf.card) });
    for (const b of doc.vcf.book)
      items.push({ uid: `91-vcf-${b.owner}`, el: xml("vcf", { owner: b.owner }, b.vcf) });
    const page = await pageList(
      el,
      items,
      (i) => i.uid,
      (i) => i.el,
      this.app.budget,
    );
    return xml(
      "export",
      { xmlns: NS.CARDLINK, jid: user, format: EXPORT_FORMAT, exported: doc.exportedAt },
      ...page.items,
      page.set,
    );
  }

  private async deleteIq(user: string, el: Element): Promise<Element> {
    const confirm = el.attrs.confirm;
    if (confirm === undefined || confirm === "") {
      throw badRequest(`deleting your account needs confirm='${user}' (your bare JID); nothing was deleted`);
    }
    if (confirm.trim().toLowerCase() !== user) {
      throw new StanzaError(
        "not-acceptable",
        `confirm='${quote(confirm)}' is not your bare JID (${user}); nothing was deleted`,
      );
    }
    const r = await this.erase(user, "self");
    return xml("delete-account", {
      xmlns: NS.CARDLINK,
      jid: user,
      deleted: String(r.deleted),
      notified: String(r.peers.length),
    });
  }
}

/**
 * The userdata feature module on the new core (issue 14; docs/PROTOCOL.md §18): `<export/>` paged with RSM,
 * `<delete-account confirm='my JID'/>`, and the XEP-0050 commands urn:cardlink:cmd:export-data / delete-data,
 * with the same payloads, texts and errors as component/userdata.ts (the legacy core's, deleted
 * at S11). The documents and the erasure are export.ts, shared with the CLI and the admin commands
 * (features/admin, through api.ts).
 *
 * It comes after cards, exchange and push in the feature list: deletion emits `account.deleting`, whose in-tx
 * handlers those modules register in their attach.
 */
import { StanzaError, badRequest, quote } from "../../../stanzas/errors.js";
import { parseForm } from "../../../stanzas/dataforms.js";
import { NS } from "../../../stanzas/ns.js";
import { xml, type Element } from "../../../stanzas/xml.js";
import type { BareJid } from "../../runtime/accounts/api.js";
import type { FeatureModule, Runtime } from "../../runtime/context.js";
import { pageList } from "../../runtime/paging.js";
import {
  CMD_DELETE,
  CMD_EXPORT,
  EXPORT_FORMAT,
  buildExport,
  deleteAccount,
  exportStep,
  itemUid,
  typedConfirmation,
  type DeleteResult,
} from "./export.js";
import { askForm } from "../../runtime/commands.js";

/** Deletes `jid`'s data, logs and counts it (`by`: "self" or the admin's JID); the unbound entries kick delivery. */
export async function eraseAccount(rt: Runtime, jid: BareJid, by: string): Promise<DeleteResult> {
  const r = await deleteAccount(rt.uow, jid);
  rt.metrics.inc("cardlink_accounts_deleted_total", { by: by === "self" ? "self" : "admin" });
  rt.log.info(
    { event: "account-deleted", jid, by, rows: r.deleted, peers: r.peers.length },
    "user data deleted",
  );
  return r;
}

async function exportIq(rt: Runtime, user: BareJid, el: Element): Promise<Element> {
  const doc = await buildExport(rt.read, user);
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
    rt.budget,
  );
  return xml(
    "export",
    { xmlns: NS.CARDLINK, jid: user, format: EXPORT_FORMAT, exported: doc.exportedAt },
    ...page.items,
    page.set,
  );
}

async function deleteIq(rt: Runtime, user: BareJid, el: Element): Promise<Element> {
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
  const r = await eraseAccount(rt, user, "self");
  return xml("delete-account", {
    xmlns: NS.CARDLINK,
    jid: user,
    deleted: String(r.deleted),
    notified: String(r.peers.length),
  });
}

/** The module (no options: everything it needs is on the Runtime). */
export function userdataModule(): FeatureModule {
  return {
    name: "userdata",
    attach(rt: Runtime): void {
      rt.metrics.describe(
        "cardlink_accounts_deleted_total",
        "users' data deleted over XMPP, by the user (self) or an admin",
      );
      const ns = NS.CARDLINK;
      rt.router.iq("get", ns, "export", (c) => exportIq(rt, c.user, c.payload));
      rt.router.iq("set", ns, "delete-account", (c) => deleteIq(rt, c.user, c.payload));

      rt.adhoc.register({
        node: CMD_EXPORT,
        name: "Export my data",
        run: async (ctx) =>
          exportStep(
            await buildExport(rt.read, ctx.user),
            rt.budget,
            `Everything cardlink holds about ${ctx.user}`,
            "use the <export/> request (it pages) or ask an administrator for `cardlink export-user`.",
          ),
      });

      rt.adhoc.register({
        node: CMD_DELETE,
        name: "Delete my data",
        run: async (ctx, req, state) => {
          if (!state) {
            return askForm({
              title: "Delete everything cardlink holds about you",
              instructions:
                "This removes your card, devices and every card exchange. Everyone who has your card is told " +
                "that you removed it. It cannot be undone. To confirm, type your address.",
              fields: [{ var: "confirm", type: "text-single", label: `Type ${ctx.user}`, required: true }],
            });
          }
          if (!req.form) throw badRequest("this step needs the submitted form");
          if (typedConfirmation(parseForm(req.form).values) !== ctx.user) {
            return {
              status: "completed",
              notes: [{ type: "warn", text: `Nothing deleted: the confirmation was not ${ctx.user}.` }],
            };
          }
          const r = await eraseAccount(rt, ctx.user, "self");
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
    },
  };
}

/**
 * Admin ad-hoc commands in the style of XEP-0133 (Service Administration): the form type and the `accountjid`
 * field are XEP-0133's, the nodes are cardlink's (urn:cardlink:cmd:admin-*), since the operations are. Only the
 * bare JIDs in the `admins` setting see or run them: the registry (component/runtime/adhoc.ts) hides them from
 * disco#items for anyone else and answers `forbidden` with a text.
 */
import { StanzaError } from "../stanzas/errors.js";
import { firstValue, formElement, parseForm, type FormField } from "../stanzas/dataforms.js";
import type { CommandRequest } from "../stanzas/adhoc.js";
import type { QueueDepth, QueueKindStats } from "../storage/store.js";
import type { AppContext, Feature } from "./runtime/context.js";
import type { CommandStep } from "./runtime/adhoc.js";
import { userJid } from "./runtime/jid.js";
import type { Push } from "./push.js";
import { buildExport, exportStep, isEmptyExport, type UserData } from "./userdata.js";

/** XEP-0133 §4's FORM_TYPE. */
const FORM_ADMIN = "http://jabber.org/protocol/admin";
export const ADMIN_NODE = (n: string): string => `urn:cardlink:cmd:admin-${n}`;

const ACCOUNT: FormField = {
  var: "accountjid",
  type: "jid-single",
  label: "The user's bare JID",
  required: true,
};

function values(req: CommandRequest): Map<string, string[]> {
  if (!req.form) throw new StanzaError("bad-request", "this step needs the submitted form");
  return parseForm(req.form).values;
}

function account(req: CommandRequest): string {
  const v = firstValue(values(req), "accountjid");
  if (!v) throw new StanzaError("bad-request", "accountjid is required");
  return userJid(v, "accountjid");
}

/** Seconds, minutes, hours or days: how an age reads best. */
export function ageText(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172_800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86_400)} d`;
}

function depthText(d: QueueDepth, now: number): string {
  if (d.entries === 0) return "empty";
  return (
    `${d.entries} waiting, ${d.retrying} retrying (most attempts ${d.maxAttempts})` +
    (d.oldestAt !== undefined ? `, oldest ${ageText(now - d.oldestAt)}` : "")
  );
}

function kindLines(stats: QueueKindStats[], now: number, unit: string): string[] {
  return stats.map(
    (k) =>
      `${k.key}: ${k.entries} ${unit} for ${k.recipients} users, ${k.retrying} retrying, oldest ${ageText(now - k.oldestAt)}`,
  );
}

/** The form that asks for fields, for a command's first stage. */
function ask(title: string, fields: FormField[], instructions?: string): CommandStep {
  return {
    status: "executing",
    state: { stage: 1 },
    form: formElement({
      type: "form",
      formType: FORM_ADMIN,
      title,
      ...(instructions ? { instructions } : {}),
      fields,
    }),
  };
}

const info = (text: string): CommandStep => ({ status: "completed", notes: [{ type: "info", text }] });

export class AdminCommands implements Feature {
  readonly name = "admin-commands";

  constructor(
    private readonly userData: UserData,
    private readonly push: Push,
  ) {}

  attach(app: AppContext): void {
    const { adhoc, store } = app;

    adhoc.register({
      node: ADMIN_NODE("user"),
      name: "Look up a user",
      adminOnly: true,
      run: async (_ctx, req, state) => {
        if (!state) return ask("Look up a user", [ACCOUNT]);
        const jid = account(req);
        const now = Date.now();
        const card = await store.cards.get(jid);
        const devices = await store.devices.list(jid);
        const bindings = await store.exchange.bindings(jid);
        const holders = await store.cards.holders(jid);
        const online = (await store.presence.all()).filter((r) => r.bare === jid).length;
        const line = (k: string, label: string, v: string): FormField => ({
          var: k,
          type: "text-single",
          label,
          values: [v],
        });
        return {
          status: "completed",
          form: formElement({
            type: "result",
            formType: FORM_ADMIN,
            title: `cardlink user ${jid}`,
            fields: [
              { var: "accountjid", type: "jid-single", label: "User", values: [jid] },
              line("card", "Card", card ? `version ${card.version}, ${card.card.fn}` : "none"),
              {
                var: "devices",
                type: "text-multi",
                label: `Devices (${devices.length})`,
                values: devices.map(
                  (d) =>
                    `${d.deviceId} ${d.platform}${d.name ? ` "${d.name}"` : ""} push ${d.tokenState}` +
                    (d.pushTopic ? ` (${d.pushTopic})` : ""),
                ),
              },
              line("bindings", "Bindings", String(bindings.length)),
              line("holders", "Holders of the card", String(holders.length)),
              line("blocks", "Blocks", String((await store.exchange.blocked(jid)).length)),
              line(
                "requests",
                "Exchange requests pending (to / from)",
                `${(await store.exchange.pendingFor(jid, now)).length} / ${(await store.exchange.pendingFrom(jid, now)).length}`,
              ),
              line("resources", "Resources known online", String(online)),
              line("outbox", "Outbox", depthText(await store.outbox.recipientStats(jid), now)),
              line("push", "Push queue", depthText(await store.push.ownerStats(jid), now)),
            ],
          }),
        };
      },
    });

    adhoc.register({
      node: ADMIN_NODE("export-user"),
      name: "Export a user's data",
      adminOnly: true,
      run: async (_ctx, req, state) => {
        if (!state) return ask("Export a user's data", [ACCOUNT]);
        const jid = account(req);
        const doc = await buildExport(store, jid);
        if (isEmptyExport(doc)) return info(`cardlink holds nothing about ${jid}.`);
        return exportStep(
          doc,
          app.budget,
          `Everything cardlink holds about ${jid}`,
          `run \`cardlink export-user ${jid}\` on the server.`,
        );
      },
    });

    adhoc.register({
      node: ADMIN_NODE("delete-user"),
      name: "Delete a user's data",
      adminOnly: true,
      run: async (ctx, req, state) => {
        if (!state)
          return ask(
            "Delete a user's data",
            [
              ACCOUNT,
              { var: "confirm", type: "boolean", label: "Yes, delete it all", required: true, values: ["0"] },
            ],
            "Deletes the user's card, devices, exchanges and queues; everyone holding the card is told (unbind).",
          );
        const jid = account(req);
        const confirm = firstValue(values(req), "confirm");
        if (confirm !== "1" && confirm !== "true") return info(`Nothing deleted: confirm was not checked.`);
        const r = await this.userData.erase(jid, ctx.user);
        if (r.deleted === 0) return info(`cardlink held nothing about ${jid}; nothing deleted.`);
        return info(`Deleted ${r.deleted} records of ${jid}; ${r.peers.length} holder(s) are told (unbind).`);
      },
    });

    adhoc.register({
      node: ADMIN_NODE("queues"),
      name: "Queue overview",
      adminOnly: true,
      run: async () => {
        const now = Date.now();
        const outbox = await store.outbox.overview();
        const push = await store.push.overview();
        const total = (s: QueueKindStats[]): number => s.reduce((a, k) => a + k.entries, 0);
        return {
          status: "completed",
          form: formElement({
            type: "result",
            formType: FORM_ADMIN,
            title: "cardlink queues",
            fields: [
              {
                var: "outbox",
                type: "text-multi",
                label: `Outbox (${total(outbox)} entries)`,
                values: outbox.length ? kindLines(outbox, now, "entries") : ["empty"],
              },
              {
                var: "push",
                type: "text-multi",
                label: `Push queue (${total(push)} notices)`,
                values: push.length ? kindLines(push, now, "notices") : ["empty"],
              },
            ],
          }),
        };
      },
    });

    adhoc.register({
      node: ADMIN_NODE("stuck"),
      name: "Re-deliver or drop a user's stuck entries",
      adminOnly: true,
      run: async (ctx, req, state) => {
        if (!state)
          return ask("Re-deliver or drop a user's entries", [
            ACCOUNT,
            {
              var: "action",
              type: "list-single",
              label: "Action",
              required: true,
              options: [
                { label: "Re-deliver now (reset attempts)", value: "redeliver" },
                { label: "Drop them", value: "drop" },
              ],
              values: ["redeliver"],
            },
            {
              var: "queues",
              type: "list-multi",
              label: "Queues",
              options: [
                { label: "Outbox (updates to the user)", value: "outbox" },
                { label: "Push queue (wake-ups of the user's devices)", value: "push" },
              ],
              values: ["outbox", "push"],
            },
          ]);
        const jid = account(req);
        const v = values(req);
        const action = firstValue(v, "action");
        if (action !== "redeliver" && action !== "drop")
          throw new StanzaError("bad-request", "action must be redeliver or drop");
        const queues = v.get("queues") ?? ["outbox", "push"];
        if (queues.some((q) => q !== "outbox" && q !== "push"))
          throw new StanzaError("bad-request", "queues may be outbox and push");
        let outbox = 0;
        let push = 0;
        if (action === "redeliver") {
          if (queues.includes("outbox")) outbox = await store.outbox.redeliver(jid);
          if (queues.includes("push")) push = await store.push.redeliver(jid);
          if (outbox) app.events.emit("outbox.enqueued", { recipients: [jid] });
          if (push) this.push.dispatcher.kick();
        } else {
          if (queues.includes("outbox")) outbox = await store.outbox.dropRecipient(jid);
          if (queues.includes("push")) push = await store.push.dropOwner(jid);
        }
        app.log.info({ event: `admin-${action}`, jid, by: ctx.user, outbox, push }, "admin queue action");
        const verb = action === "redeliver" ? "Re-delivering" : "Dropped";
        return info(`${verb} ${outbox} outbox entries and ${push} push notices of ${jid}.`);
      },
    });
  }
}

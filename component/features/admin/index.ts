/**
 * Admin ad-hoc commands on the new core (issue 14; docs/PROTOCOL.md §19): the nodes, form fields and texts of
 * component/admin-commands.ts (the legacy core's, deleted at S11), over the 2000 schema: the
 * user lookup reads the runtime's inspect views and the features' api.ts, the queue commands the stream and the
 * `push` jobs (repo.ts). XEP-0133's FORM_TYPE and `accountjid` field, cardlink's own nodes; only the bare JIDs in
 * the `admins` setting see or run them (the registry's `adminOnly`).
 */
import { StanzaError } from "../../../stanzas/errors.js";
import { firstValue, formElement, parseForm, type FormField } from "../../../stanzas/dataforms.js";
import type { CommandRequest } from "../../../stanzas/adhoc.js";
import type { ReadTx } from "../../../storage/store.js";
import type { BareJid } from "../../runtime/accounts/api.js";
import type { CommandStep } from "../../runtime/adhoc.js";
import type { FeatureModule, Runtime } from "../../runtime/context.js";
import * as inspect from "../../runtime/inspect.js";
import { userJid } from "../../runtime/jid.js";
import { getCard } from "../cards/api.js";
import { exchangeCounts } from "../exchange/api.js";
import { buildExport, eraseAccount, exportStep, isEmptyExport } from "../userdata/api.js";
import { adminRepo, type Depth, type KindStats } from "./repo.js";
import { askForm } from "../../runtime/commands.js";

/** The push feature's job channel (features/push/payload.ts PUSH_CHANNEL; not in its api, so named here). */
const PUSH_CHANNEL = "push";

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

function depthText(d: Depth, now: number): string {
  if (d.entries === 0) return "empty";
  return (
    `${d.entries} waiting, ${d.retrying} retrying (most attempts ${d.maxAttempts})` +
    (d.oldestAt !== undefined ? `, oldest ${ageText(now - d.oldestAt)}` : "")
  );
}

function kindLines(stats: KindStats[], now: number, unit: string): string[] {
  return stats.map(
    (k) =>
      `${k.key}: ${k.entries} ${unit} for ${k.recipients} users, ${k.retrying} retrying, oldest ${ageText(now - k.oldestAt)}`,
  );
}

/** The form that asks for fields, for a command's first stage. */
function ask(title: string, fields: FormField[], instructions?: string): CommandStep {
  return askForm({
    formType: FORM_ADMIN,
    title,
    ...(instructions ? { instructions } : {}),
    fields,
  });
}

const info = (text: string): CommandStep => ({ status: "completed", notes: [{ type: "info", text }] });

/** The runtime's read snapshot as the inspect views take it. */
const inspectable = (rt: Runtime): inspect.Inspectable => ({
  read: <T>(name: string, fn: (tx: ReadTx) => Promise<T>) => rt.read(name, (r) => fn(r.read)),
});

const NONE: Depth = { entries: 0, retrying: 0, maxAttempts: 0 };

async function lookup(rt: Runtime, jid: BareJid): Promise<CommandStep> {
  const s = inspectable(rt);
  const devices = await inspect.devices(s, jid);
  const online = (await inspect.resources(s)).filter((r) => r.bare === jid).length;
  const v = await rt.read("admin.user", async (r) => {
    const me = await r.accounts.resolve(jid);
    if (me === undefined) return undefined;
    const q = adminRepo(r.read);
    // The snapshot's clock (Date.now in the service; pinned in tests): requests pending "now", ages from it.
    const now = r.read.now;
    return {
      now,
      card: await getCard(r.read, me),
      exchange: await exchangeCounts(r.read, me, now),
      holders: (await r.audience.holders(me)).length,
      outbox: await q.laneDepth(me),
      push: await q.pushDepth(me),
    };
  });
  const line = (k: string, label: string, value: string): FormField => ({
    var: k,
    type: "text-single",
    label,
    values: [value],
  });
  const now = v?.now ?? Date.now();
  const x = v?.exchange ?? { bindings: 0, blocks: 0, pendingTo: 0, pendingFrom: 0 };
  return {
    status: "completed",
    form: formElement({
      type: "result",
      formType: FORM_ADMIN,
      title: `cardlink user ${jid}`,
      fields: [
        { var: "accountjid", type: "jid-single", label: "User", values: [jid] },
        line("card", "Card", v?.card ? `version ${v.card.version}, ${v.card.card.fn}` : "none"),
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
        line("bindings", "Bindings", String(x.bindings)),
        line("holders", "Holders of the card", String(v?.holders ?? 0)),
        line("blocks", "Blocks", String(x.blocks)),
        line("requests", "Exchange requests pending (to / from)", `${x.pendingTo} / ${x.pendingFrom}`),
        line("resources", "Resources known online", String(online)),
        line("outbox", "Outbox", depthText(v?.outbox ?? NONE, now)),
        line("push", "Push queue", depthText(v?.push ?? NONE, now)),
      ],
    }),
  };
}

/** Dead letters shown (and offered for replay) by one run of the command; the CLI lists them all. */
const DEAD_SHOWN = 50;

/** One line of a dead letter for the form: id, age, what, where, why. */
function deadLine(d: inspect.DeadLetterView, now: number): string {
  return (
    `#${d.id} ${ageText(now - d.diedAt)} ago ${d.channel}/${d.kind} → ${d.target}` +
    `${d.jid ? ` (${d.jid})` : ""}, ${d.attempts} attempt(s): ${(d.lastError ?? "").slice(0, 120)}`
  );
}

async function deadLettersForm(rt: Runtime): Promise<CommandStep> {
  const list = await inspect.deadLetterList(inspectable(rt), { limit: DEAD_SHOWN });
  const now = Date.now();
  if (list.length === 0) return info("No dead letters.");
  return askForm({
    formType: FORM_ADMIN,
    title: "Dead letters",
    instructions:
      `Jobs given up after a permanent refusal or their last attempt (oldest first, at most ${DEAD_SHOWN}; ` +
      "`cardlink dead-letters` lists all). Replayed letters go back to their queue with the same id.",
    fields: [
      {
        var: "letters",
        type: "text-multi",
        label: `Dead letters (${list.length})`,
        values: list.map((d) => deadLine(d, now)),
      },
      {
        var: "replay",
        type: "list-multi",
        label: "Replay these",
        options: list.map((d) => ({ label: `#${d.id} ${d.channel} → ${d.target}`, value: String(d.id) })),
        values: [],
      },
    ],
  });
}

/** The module (no options: everything it needs is on the Runtime). It comes after userdata in the list. */
export function adminModule(): FeatureModule {
  return {
    name: "admin",
    attach(rt: Runtime): void {
      const { adhoc } = rt;

      adhoc.register({
        node: ADMIN_NODE("user"),
        name: "Look up a user",
        adminOnly: true,
        run: async (_ctx, req, state) => {
          if (!state) return ask("Look up a user", [ACCOUNT]);
          return lookup(rt, account(req));
        },
      });

      adhoc.register({
        node: ADMIN_NODE("export-user"),
        name: "Export a user's data",
        adminOnly: true,
        run: async (_ctx, req, state) => {
          if (!state) return ask("Export a user's data", [ACCOUNT]);
          const jid = account(req);
          const doc = await buildExport(rt.read, jid);
          if (isEmptyExport(doc)) return info(`cardlink holds nothing about ${jid}.`);
          return exportStep(
            doc,
            rt.budget,
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
                {
                  var: "confirm",
                  type: "boolean",
                  label: "Yes, delete it all",
                  required: true,
                  values: ["0"],
                },
              ],
              "Deletes the user's card, devices, exchanges and queues; everyone holding the card is told (unbind).",
            );
          const jid = account(req);
          const confirm = firstValue(values(req), "confirm");
          if (confirm !== "1" && confirm !== "true") return info(`Nothing deleted: confirm was not checked.`);
          const r = await eraseAccount(rt, jid, ctx.user);
          if (r.deleted === 0) return info(`cardlink held nothing about ${jid}; nothing deleted.`);
          return info(
            `Deleted ${r.deleted} records of ${jid}; ${r.peers.length} holder(s) are told (unbind).`,
          );
        },
      });

      adhoc.register({
        node: ADMIN_NODE("queues"),
        name: "Queue overview",
        adminOnly: true,
        run: async () => {
          const now = Date.now();
          const { outbox, push } = await rt.read("admin.queues", async (r) => {
            const q = adminRepo(r.read);
            return { outbox: await q.streamOverview(), push: await q.pushOverview() };
          });
          const total = (s: KindStats[]): number => s.reduce((a, k) => a + k.entries, 0);
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
        node: ADMIN_NODE("dead-letters"),
        name: "Dead letters: list and replay",
        adminOnly: true,
        run: async (ctx, req, state) => {
          if (!state) return deadLettersForm(rt);
          const chosen = values(req).get("replay") ?? [];
          if (chosen.some((v) => !/^[1-9][0-9]{0,15}$/.test(v)))
            throw new StanzaError("bad-request", "replay takes dead letter ids");
          if (chosen.length === 0) return info("Nothing replayed: no letter was chosen.");
          const n = await rt.queue.replayDeadLetters({ ids: chosen.map(Number) });
          rt.log.info(
            { event: "admin-replay-dead-letters", by: ctx.user, ids: chosen, n },
            "dead letters replayed",
          );
          return info(
            `Replayed ${n} dead letter(s)${n < chosen.length ? ` (${chosen.length - n} were gone)` : ""}.`,
          );
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
          const r = await rt.uow("admin.stuck", async (u) => {
            const me = await u.accounts.resolve(jid);
            if (me === undefined) return { me, outbox: 0, push: 0 };
            const q = adminRepo(u.tx);
            const lane = queues.includes("outbox");
            const jobs = queues.includes("push");
            if (action === "redeliver") {
              return {
                me,
                outbox: lane ? await q.redeliverLane(me) : 0,
                push: jobs ? await q.redeliverPush(me) : 0,
              };
            }
            return { me, outbox: lane ? await q.dropLane(me) : 0, push: jobs ? await q.dropPush(me) : 0 };
          });
          if (action === "redeliver") {
            // Hints after the commit (the durable state is the reset rows): offer the lane, wake the channel.
            if (r.outbox && r.me !== undefined) rt.queue.kickLanes([r.me]);
            if (r.push) rt.queue.kickChannel(PUSH_CHANNEL);
          }
          const { outbox, push } = r;
          rt.log.info({ event: `admin-${action}`, jid, by: ctx.user, outbox, push }, "admin queue action");
          const verb = action === "redeliver" ? "Re-delivering" : "Dropped";
          return info(`${verb} ${outbox} outbox entries and ${push} push notices of ${jid}.`);
        },
      });
    },
  };
}

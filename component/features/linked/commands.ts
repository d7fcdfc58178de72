/**
 * XEP-0050 ad-hoc commands of linked accounts (PROTOCOL.md §22.8), for a client that does not speak
 * urn:cardlink:linked:0: link an account, confirm (accept a request or type a service's code), unlink, list.
 * Every action is the service's (one unit of work each); refusals are the same stanza errors as the IQs'.
 */
import { StanzaError } from "../../../stanzas/errors.js";
import { firstValue, formElement, parseForm, type FormField } from "../../../stanzas/dataforms.js";
import type { CommandRequest } from "../../../stanzas/adhoc.js";
import { SETTINGS, parseSettings, type AccountRef, type Setting } from "../../../stanzas/linked.js";
import type { Command, CommandStep } from "../../runtime/adhoc.js";
import { askForm, commandNode, completed, submittedForm } from "../../runtime/commands.js";
import type { LinkedService, LinksView } from "./service.js";

const submitted = (req: CommandRequest): Map<string, string[]> => parseForm(submittedForm(req)).values;

const ACCOUNT_FIELDS: FormField[] = [
  { var: "jid", type: "jid-single", label: "XMPP account (user@host), or leave empty for a service account" },
  { var: "service", type: "text-single", label: "Service (a configured connector)" },
  { var: "account", type: "text-single", label: "Account name on that service" },
];
const SETTINGS_FIELD: FormField = {
  var: "settings",
  type: "list-multi",
  label: "Settings this account takes part in",
  options: SETTINGS.map((s) => ({ label: s, value: s })),
  values: [...SETTINGS],
};

/** The account a submitted form names: jid, or service + account. */
function refOf(v: Map<string, string[]>): AccountRef {
  const jid = firstValue(v, "jid");
  const service = firstValue(v, "service");
  const account = firstValue(v, "account");
  if (jid && !service && !account) return { jid };
  if (!jid && service && account) return { service, account };
  throw new StanzaError("bad-request", "give an XMPP account (jid), or a service and an account on it");
}

const settingsOf = (v: Map<string, string[]>): Setting[] =>
  parseSettings((v.get("settings") ?? []).join(" "));

const refText = (r: AccountRef): string => ("jid" in r ? r.jid : `${r.account} on ${r.service}`);

export function linkLines(v: LinksView): string[] {
  return [
    ...v.members.map((m) => `${refText(m.ref)}${m.self ? " (this account)" : ""}: ${m.settings.join(", ")}`),
    ...v.pending.map(
      (p) =>
        `${p.direction === "out" ? "waiting for" : "request from"} ${refText(p.ref)} until ` +
        new Date(p.expiresAt).toISOString(),
    ),
  ];
}

const ask = (title: string, fields: FormField[], instructions?: string): CommandStep =>
  askForm({ title, ...(instructions ? { instructions } : {}), fields });

export function linkedCommands(svc: LinkedService): Command[] {
  return [
    {
      node: commandNode("link"),
      name: "Link another account",
      run: async (ctx, req, state) => {
        if (!state)
          return ask(
            "Link another account",
            [...ACCOUNT_FIELDS, SETTINGS_FIELD],
            "An XMPP account must accept from its own client; a service account gets a one-time code to type back.",
          );
        const v = submitted(req);
        const ref = refOf(v);
        const settings = settingsOf(v);
        if ("jid" in ref) {
          await svc.request(ctx.user, ref.jid, settings);
          return completed(
            `Request sent. Accept it from ${ref.jid} ("Confirm a link", or any cardlink client).`,
          );
        }
        await svc.linkService(ctx.user, ref.service, ref.account, settings);
        return completed(
          `${ref.service} was asked to show a one-time code to ${ref.account}; type it in "Confirm a link".`,
        );
      },
    },
    {
      node: commandNode("link-confirm"),
      name: "Confirm a link",
      run: async (ctx, req, state) => {
        if (!state)
          return ask("Confirm a link", [
            { var: "jid", type: "jid-single", label: "Accept the request from this XMPP account" },
            { var: "service", type: "text-single", label: "or: service" },
            { var: "account", type: "text-single", label: "account on that service" },
            { var: "code", type: "text-single", label: "the one-time code the service showed" },
            SETTINGS_FIELD,
          ]);
        const v = submitted(req);
        const ref = refOf(v);
        if ("jid" in ref) {
          await svc.accept(ctx.user, ref.jid, settingsOf(v));
          return completed(`Linked with ${ref.jid}.`);
        }
        const code = firstValue(v, "code");
        if (!code) throw new StanzaError("bad-request", "the code is required");
        await svc.confirm(ctx.user, ref.service, ref.account, code);
        return completed(`Linked with ${ref.account} on ${ref.service}.`);
      },
    },
    {
      node: commandNode("unlink"),
      name: "Unlink an account",
      run: async (ctx, req, state) => {
        if (!state) {
          const view = await svc.list(ctx.user);
          const options = [
            ...view.members.filter((m) => !m.self).map((m) => m.ref),
            ...view.pending.map((p) => p.ref),
          ].map((r) => ({
            label: refText(r),
            value: "jid" in r ? `xmpp:${r.jid}` : `${r.service}:${r.account}`,
          }));
          if (options.length === 0) return completed("Nothing is linked and no request is waiting.");
          return ask("Unlink an account", [
            { var: "which", type: "list-single", label: "Account or request", required: true, options },
          ]);
        }
        const which = firstValue(submitted(req), "which");
        const colon = which?.indexOf(":") ?? -1;
        if (!which || colon <= 0) throw new StanzaError("bad-request", "choose an account");
        const kind = which.slice(0, colon);
        const rest = which.slice(colon + 1);
        const ref: AccountRef = kind === "xmpp" ? { jid: rest } : { service: kind, account: rest };
        await svc.unlink(ctx.user, ref);
        return completed(`Unlinked ${refText(ref)}.`);
      },
    },
    {
      node: commandNode("links"),
      name: "My linked accounts",
      run: async (ctx) => {
        const lines = linkLines(await svc.list(ctx.user));
        return {
          status: "completed",
          form: formElement({
            type: "result",
            title: "Linked accounts",
            fields: [
              {
                var: "links",
                type: "text-multi",
                label: "Accounts and requests",
                values: lines.length ? lines : ["none"],
              },
            ],
          }),
        };
      },
    },
  ];
}

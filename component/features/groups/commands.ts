/**
 * XEP-0050 ad-hoc commands of the groups feature (issue 10; PROTOCOL.md §21.11): create a group, invite to it,
 * answer invitations, make and redeem a group code, list a group's members, exempt a co-member and lift an exemption, for a generic XMPP client
 * that does not know urn:cardlink:0. Every action is the feature's service (one unit of work each), so a command
 * is refused exactly as its IQ is (the same error and text, nothing written). Every list a form offers (groups,
 * invitations, exemptions, members) is cut to what fits the stanza budget, with a note naming the IQ that pages.
 */
import { FIELD_NAMES, type FieldName } from "../../../stanzas/model/card.js";
import type { SharePolicy } from "../../../stanzas/model/policy.js";
import { StanzaError } from "../../../stanzas/errors.js";
import { firstValue, formElement, parseForm, type FormField } from "../../../stanzas/dataforms.js";
import type { CommandRequest } from "../../../stanzas/adhoc.js";
import { xml } from "../../../stanzas/xml.js";
import type { Command, CommandStep } from "../../runtime/adhoc.js";
import { askForm, commandNode, completed, submittedForm, MAX_FORM_ITEMS } from "../../runtime/commands.js";
import type { StanzaBudget } from "../../runtime/budget.js";
import type { IqContext } from "../../runtime/router.js";
import { INVITE_RULES, type InviteRule } from "./repo.js";
import type { GroupsService } from "./service.js";

const submitted = (req: CommandRequest): Map<string, string[]> => parseForm(submittedForm(req)).values;
const required = (v: Map<string, string[]>, name: string, label: string): string => {
  const x = firstValue(v, name)?.trim();
  if (!x) throw new StanzaError("bad-request", `${label} is required`);
  return x;
};

/** Options cut to what fits one stanza (as `<option/>` elements), and how many were left out. */
function fitOptions(
  budget: StanzaBudget,
  all: ReadonlyArray<{ label: string; value: string }>,
): { options: Array<{ label: string; value: string }>; left: number } {
  const fit = budget.page(MAX_FORM_ITEMS);
  for (const o of all) if (!fit.add(xml("option", { label: o.label }, xml("value", {}, o.value)))) break;
  const options = all.slice(0, fit.items.length);
  return { options, left: all.length - options.length };
}
const leftNote = (left: number, what: string, iq: string): CommandStep["notes"] =>
  left > 0
    ? [
        {
          type: "info",
          text: `${left} more ${what} not shown (too many for one form); the IQ API pages them (${iq} with <set/>).`,
        },
      ]
    : undefined;

/** The share-policy field: card fields to share with the group; none chosen = the whole card. */
const SHARE_FIELD: FormField = {
  var: "share",
  type: "list-multi",
  label: "Share only these fields (none = the whole card)",
  options: FIELD_NAMES.map((f) => ({ label: f, value: f })),
};
function sharePolicy(v: Map<string, string[]>): SharePolicy | null {
  const fields = (v.get("share") ?? []).map((f) => f.trim()).filter((f) => f !== "");
  for (const f of fields)
    if (!(FIELD_NAMES as readonly string[]).includes(f))
      throw new StanzaError("bad-request", `unknown card field '${f}'; fields are ${FIELD_NAMES.join(", ")}`);
  return fields.length === 0 ? null : { fields: fields as FieldName[] };
}

export interface GroupCommandsOptions {
  svc: GroupsService;
  budget: StanzaBudget;
  /** The component's domain, for a group code's `xmpp:` URI (PROTOCOL §21.13). */
  domain: string;
}

/** The commands; index.ts registers them on rt.adhoc. */
export function groupCommands(o: GroupCommandsOptions): Command[] {
  const { svc, budget } = o;

  /** The group field over my groups, or a completed step saying I have none. */
  const groupField = async (
    ctx: IqContext,
  ): Promise<{ field: FormField; notes: CommandStep["notes"] } | CommandStep> => {
    const mine = await svc.groups(ctx.user);
    if (mine.length === 0) return completed("You are in no group.");
    const { options, left } = fitOptions(
      budget,
      mine.map((m) => ({ label: `${m.group.name} (${m.members} members, ${m.role})`, value: m.group.id })),
    );
    return {
      field: {
        var: "group",
        type: "list-single",
        label: "Group",
        required: true,
        options,
        values: [options[0]?.value ?? ""],
      },
      notes: leftNote(left, "group(s)", "<groups/>"),
    };
  };
  /** The first step of a command that acts on one of the user's groups: a form with the group list and `extra`. */
  const askGroup = async (ctx: IqContext, title: string, extra: FormField[] = []): Promise<CommandStep> => {
    const gf = await groupField(ctx);
    if (!("field" in gf)) return gf;
    return askForm({ title, fields: [gf.field, ...extra] }, gf.notes);
  };
  const groupName = async (ctx: IqContext, id: string): Promise<string> =>
    (await svc.groups(ctx.user)).find((m) => m.group.id === id)?.group.name ?? id;

  return [
    {
      node: commandNode("group-create"),
      name: "Create a contact group",
      run: async (ctx, req, state) => {
        if (!state)
          return askForm({
            title: "Create a contact group",
            fields: [
              { var: "name", type: "text-single", label: "Name", required: true },
              { var: "description", type: "text-single", label: "Description" },
              {
                var: "invite",
                type: "list-single",
                label: "Who may invite",
                options: [
                  { label: "Only me (the owner)", value: "owner" },
                  { label: "The owner and admins", value: "admins" },
                  { label: "Every member", value: "members" },
                ],
                values: ["admins"],
              },
              SHARE_FIELD,
            ],
          });
        const v = submitted(req);
        const invite = firstValue(v, "invite") ?? "admins";
        if (!(INVITE_RULES as readonly string[]).includes(invite))
          throw new StanzaError("bad-request", `invite must be one of ${INVITE_RULES.join(", ")}`);
        const g = await svc.create(
          ctx.user,
          required(v, "name", "Name"),
          firstValue(v, "description") ?? "",
          invite as InviteRule,
          sharePolicy(v),
        );
        return completed(
          `Created the group ${String(g.attrs.name)}. Invite members with "Invite to a group".`,
        );
      },
    },
    {
      node: commandNode("group-invite"),
      name: "Invite to a group",
      run: async (ctx, req, state) => {
        if (!state)
          return askGroup(ctx, "Invite to a group", [
            { var: "jid", type: "jid-single", label: "Address (user@server)", required: true },
          ]);
        const v = submitted(req);
        const group = required(v, "group", "Group");
        const i = await svc.invite(ctx.user, group, required(v, "jid", "Address"));
        return completed(
          `Invited ${i.jid} to ${await groupName(ctx, group)}; the invitation expires ${new Date(i.expiresAt).toISOString()}.`,
        );
      },
    },
    {
      node: commandNode("group-invitations"),
      name: "Answer group invitations",
      run: async (ctx, req, state) => {
        if (!state) {
          const all = await svc.invitations(ctx.user);
          if (all.length === 0) return completed("No group invitations.");
          const { options, left } = fitOptions(
            budget,
            all.map((i) => ({ label: `${i.group.name} (from ${i.from})`, value: i.id })),
          );
          return askForm(
            {
              title: "Group invitations",
              fields: [
                {
                  var: "invitation",
                  type: "list-single",
                  label: "Invitation",
                  required: true,
                  options,
                  values: [options[0]?.value ?? ""],
                },
                {
                  var: "answer",
                  type: "list-single",
                  label: "Answer",
                  required: true,
                  options: [
                    { label: "Accept: join and share my card", value: "accept" },
                    { label: "Decline", value: "decline" },
                  ],
                  values: ["accept"],
                },
                SHARE_FIELD,
              ],
            },
            left > 0 ? leftNote(left, "invitation(s)", "<group-invitations/>") : undefined,
          );
        }
        const v = submitted(req);
        const id = firstValue(v, "invitation");
        const answer = firstValue(v, "answer");
        if (!id || (answer !== "accept" && answer !== "decline"))
          throw new StanzaError("bad-request", "choose an invitation and accept or decline");
        if (answer === "decline") {
          await svc.decline(ctx.user, id);
          return completed("Declined.");
        }
        const g = await svc.accept(ctx.user, id, sharePolicy(v));
        return completed(`You joined ${String(g.attrs.name)} (${String(g.attrs.members)} members).`);
      },
    },
    {
      node: commandNode("group-code"),
      name: "Make a group code",
      run: async (ctx, req, state) => {
        if (!state) return askGroup(ctx, "Make a group code");
        const group = required(submitted(req), "group", "Group");
        const k = await svc.createCode(ctx.user, group);
        return completed(
          `Code for ${await groupName(ctx, group)}: ${k.code} (once, until ${new Date(k.expiresAt).toISOString()}). ` +
            `Link: xmpp:${o.domain}?cardlink;group-code=${k.code}`,
        );
      },
    },
    {
      node: commandNode("group-redeem"),
      name: "Join a group with a code",
      run: async (ctx, req, state) => {
        if (!state)
          return askForm({
            title: "Join a group with a code",
            fields: [{ var: "code", type: "text-single", label: "Code", required: true }, SHARE_FIELD],
          });
        const v = submitted(req);
        const g = await svc.redeemCode(ctx.user, required(v, "code", "Code"), sharePolicy(v));
        return completed(`You joined ${String(g.attrs.name)} (${String(g.attrs.members)} members).`);
      },
    },
    {
      node: commandNode("group-members"),
      name: "List a group's members",
      run: async (ctx, req, state) => {
        if (!state) return askGroup(ctx, "List a group's members");
        const group = required(submitted(req), "group", "Group");
        const lines = (await svc.members(ctx.user, group)).map((m) => `${m.jid} (${m.role})`);
        // As many lines as fit in one stanza, measured as the <value/> elements they become.
        const fit = budget.page(MAX_FORM_ITEMS);
        for (const l of lines) if (!fit.add(xml("value", {}, l))) break;
        const shown = lines.slice(0, fit.items.length);
        const notes = leftNote(lines.length - shown.length, "member(s)", "<group-members/>");
        return {
          status: "completed",
          form: formElement({
            type: "result",
            title: `${await groupName(ctx, group)}: ${lines.length} member(s)`,
            fields: [{ var: "members", type: "text-multi", label: "Members", values: shown }],
          }),
          ...(notes ? { notes } : {}),
        };
      },
    },
    {
      node: commandNode("group-exempt"),
      name: "Stop sending my card to a group member",
      run: async (ctx, req, state) => {
        if (!state)
          return askGroup(ctx, "Exempt a group member", [
            { var: "jid", type: "jid-single", label: "Member (user@server)", required: true },
            {
              var: "withdraw",
              type: "boolean",
              label: "Also withdraw the copy they have",
              values: ["0"],
            },
          ]);
        const v = submitted(req);
        const w = firstValue(v, "withdraw") ?? "0";
        if (!["0", "1", "true", "false"].includes(w))
          throw new StanzaError("bad-request", "withdraw must be a boolean");
        const jid = required(v, "jid", "Member");
        await svc.exempt(ctx.user, required(v, "group", "Group"), jid, w === "1" || w === "true");
        return completed(`Your card no longer reaches ${jid} through groups. Only you can see this.`);
      },
    },
    {
      node: commandNode("group-unexempt"),
      name: "Send my card to an exempted member again",
      run: async (ctx, req, state) => {
        if (!state) {
          const all = await svc.exemptions(ctx.user);
          if (all.length === 0) return completed("You exempt no one.");
          const { options, left } = fitOptions(
            budget,
            all.map((x) => ({ label: x.jid, value: x.jid })),
          );
          return askForm(
            {
              title: "Lift an exemption",
              fields: [
                {
                  var: "jid",
                  type: "list-single",
                  label: "Member",
                  required: true,
                  options,
                  values: [options[0]?.value ?? ""],
                },
              ],
            },
            left > 0 ? leftNote(left, "exemption(s)", "<group-exemptions/>") : undefined,
          );
        }
        const jid = required(submitted(req), "jid", "Member");
        await svc.unexempt(ctx.user, jid);
        return completed(`${jid} receives your card through the groups you share again.`);
      },
    },
  ];
}

/**
 * XEP-0050 ad-hoc commands for update requests (PROTOCOL §20.17), so a client that only knows ad-hoc commands can
 * do the whole flow: A asks for an entry to be updated (`request-update`); B lists pending requests, answers one
 * (the pre-filled update form, or the pick form) or declines it (`update-requests`). Every step's submitted form
 * is validated by the same XEP-0004 validator as the IQ answers (stanzas/update-request.ts); every action is the
 * service's (one unit of work each).
 */
import { formElement } from "../../../stanzas/dataforms.js";
import {
  UPDATE_FORM_TYPE,
  PICK_FORM_TYPE,
  cardJid,
  updateForm,
  updateValues,
  validateSubmission,
  type FieldDef,
} from "../../../stanzas/update-request.js";
import { xml } from "../../../stanzas/xml.js";
import type { Command } from "../../runtime/adhoc.js";
import { commandNode, completed, submittedForm, MAX_FORM_ITEMS } from "../../runtime/commands.js";
import type { StanzaBudget } from "../../runtime/budget.js";
import type { Reader } from "../../runtime/uow.js";
import { bookRepo } from "./repo.js";
import type { RequestService } from "./request-service.js";

const MAKE_TYPE = "urn:cardlink:0:update-request-make";
const CHOOSE_TYPE = "urn:cardlink:0:update-request-choose";

const formOf = submittedForm;

const FORM_OPTIONS = [
  { label: "A form with what I have, to check and complete", value: "form" },
  { label: "The entry's address, to read and edit it", value: "address" },
  { label: "A choice among their own card's details", value: "pick" },
];

export interface RequestCommandsOptions {
  svc: RequestService;
  read: Reader;
  budget: StanzaBudget;
  domain: string;
}

/** A's entries as list options (id order), as many as fit in one stanza. */
async function entryOptions(
  o: RequestCommandsOptions,
  user: string,
): Promise<{ options: Array<{ label: string; value: string }>; left: number }> {
  return o.read("book.request-command", async (r) => {
    const me = await r.accounts.resolve(user);
    if (me === undefined) return { options: [], left: 0 };
    const repo = bookRepo(r.read);
    const total = (await repo.usage(me)).entries;
    const fit = o.budget.page(MAX_FORM_ITEMS);
    const options: Array<{ label: string; value: string }> = [];
    for (const row of await repo.page(me, "", MAX_FORM_ITEMS)) {
      if (!row.card) continue;
      const jid = row.linkedOwner !== undefined ? await r.accounts.jidOf(row.linkedOwner) : cardJid(row.card);
      const label = jid ? `${row.card.fn} <${jid}>` : row.card.fn;
      if (!fit.add(xml("option", { label }, xml("value", {}, row.id)))) break;
      options.push({ label, value: row.id });
    }
    return { options, left: total - options.length };
  });
}

export function requestCommands(o: RequestCommandsOptions): Command[] {
  const { svc } = o;
  return [
    {
      node: commandNode("request-update"),
      name: "Ask a contact to update their entry",
      run: async (ctx, req, state) => {
        if (!state) {
          const { options, left } = await entryOptions(o, ctx.user);
          if (options.length === 0) return completed("Your address book is empty.");
          const fields: FieldDef[] = [
            { var: "entry", type: "list-single", label: "Entry", required: true, options },
            {
              var: "jid",
              type: "jid-single",
              label: "Ask (address)",
              desc: "Leave empty to ask the address the entry names",
            },
            {
              var: "form",
              type: "list-single",
              label: "Send them",
              required: true,
              options: FORM_OPTIONS,
              values: ["form"],
            },
          ];
          return {
            status: "executing",
            state: { stage: 1, fields },
            form: formElement({ type: "form", formType: MAKE_TYPE, title: "Ask for an update", fields }),
            ...(left > 0
              ? {
                  notes: [
                    {
                      type: "info" as const,
                      text: `${left} entries not listed (too many for one form); the IQ API takes any entry id.`,
                    },
                  ],
                }
              : {}),
          };
        }
        const values = validateSubmission(formOf(req), MAKE_TYPE, state.fields as FieldDef[]);
        const entry = values.get("entry")?.[0] ?? "";
        const jid = values.get("jid")?.[0]?.trim();
        const form = values.get("form")?.[0] as "form" | "address" | "pick";
        const made = await svc.create(ctx.user, entry, jid ? jid : undefined, form);
        return completed(
          `Asked ${made.to} (request ${made.id}); it expires ${new Date(made.expiresAt).toISOString()}.`,
        );
      },
    },
    {
      node: commandNode("update-requests"),
      name: "Answer update requests",
      run: async (ctx, req, state) => {
        if (!state) {
          const all = await svc.incoming(ctx.user);
          if (all.length === 0) return completed("No pending update requests.");
          const fit = o.budget.page(MAX_FORM_ITEMS);
          const options: Array<{ label: string; value: string }> = [];
          for (const p of all) {
            const label = `${p.name ? `${p.name} <${p.from}>` : p.from} (${p.form})`;
            if (!fit.add(xml("option", { label }, xml("value", {}, p.id)))) break;
            options.push({ label, value: p.id });
          }
          const fields: FieldDef[] = [
            { var: "request", type: "list-single", label: "Request", required: true, options },
            {
              var: "action",
              type: "list-single",
              label: "Answer",
              required: true,
              options: [
                { label: "Answer: send my details", value: "answer" },
                { label: "Decline", value: "decline" },
              ],
              values: ["answer"],
            },
          ];
          return {
            status: "executing",
            state: { stage: 1, fields },
            form: formElement({ type: "form", formType: CHOOSE_TYPE, title: "Update requests", fields }),
          };
        }
        if (state.stage === 1) {
          const values = validateSubmission(formOf(req), CHOOSE_TYPE, state.fields as FieldDef[]);
          const id = values.get("request")?.[0] ?? "";
          if (values.get("action")?.[0] === "decline") {
            await svc.decline(ctx.user, id);
            return completed("Declined. Only the requester is told.");
          }
          const v = await svc.view(ctx.user, id);
          if (v.form === "pick") {
            return { status: "executing", state: { stage: 2, id }, form: await svc.pickForm(ctx.user, id) };
          }
          // Forms `form` and `address` alike: a generic client edits the entry through the pre-filled form.
          const form = updateForm(updateValues(v.entryCard, ctx.user), {
            title: `Your details in ${v.name ?? v.from}'s address book`,
            instructions: `Check and complete what ${v.from} has for you, then submit.`,
          });
          return { status: "executing", state: { stage: 2, id }, form };
        }
        const form = formOf(req);
        const id = String(state.id);
        const r = await svc.answer(ctx.user, id, { form });
        return completed(
          r.changed ? "Sent: the requester's entry is updated." : "Sent: nothing needed changing.",
        );
      },
    },
  ];
}

/** The FORM_TYPEs the commands' steps carry (PROTOCOL §20.17). */
export const COMMAND_FORM_TYPES = [MAKE_TYPE, CHOOSE_TYPE, UPDATE_FORM_TYPE, PICK_FORM_TYPE] as const;

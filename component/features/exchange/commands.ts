/**
 * XEP-0050 ad-hoc commands of the exchange feature (docs/REDESIGN.md §1.2): request an exchange, answer pending
 * requests, make and redeem an exchange code, list my contacts, for a generic XMPP client that does not know
 * urn:cardlink:0. The forms, fields, notes and errors are the legacy core's (component/card-commands.ts) byte for byte;
 * every action is the feature's service (one unit of work each).
 */
import { StanzaError } from "../../../stanzas/errors.js";
import { firstValue, formElement, parseForm, type FormField } from "../../../stanzas/dataforms.js";
import type { CommandRequest } from "../../../stanzas/adhoc.js";
import { xml } from "../../../stanzas/xml.js";
import type { Command, CommandStep } from "../../runtime/adhoc.js";
import { askForm, commandNode, completed, submittedForm, MAX_FORM_ITEMS } from "../../runtime/commands.js";
import type { StanzaBudget } from "../../runtime/budget.js";
import type { IqContext } from "../../runtime/router.js";
import type { Reader } from "../../runtime/uow.js";
import { getCard } from "../cards/api.js";
import { exchangeRepo } from "./repo.js";
import type { ExchangeService } from "./service.js";

const submitted = (req: CommandRequest): Map<string, string[]> => parseForm(submittedForm(req)).values;

/** A two-step command: ask for one required field, then act on the answer. */
function askThen(
  title: string,
  field: FormField & { var: string },
  act: (ctx: IqContext, value: string) => Promise<CommandStep>,
): Command["run"] {
  return async (ctx, req, state) => {
    if (!state) {
      return askForm({ title, fields: [field] });
    }
    const value = firstValue(submitted(req), field.var);
    if (!value) throw new StanzaError("bad-request", `${field.label ?? field.var} is required`);
    return act(ctx, value);
  };
}

export interface ExchangeCommandsOptions {
  svc: ExchangeService;
  read: Reader;
  budget: StanzaBudget;
  /** config.exchange.codeTtlSeconds (the note says how long a code lives). */
  codeTtlSeconds: number;
}

/** The peer's line of the contacts list: name, JID and card version, as today. */
async function contactLines(read: Reader, user: string): Promise<string[]> {
  return read("exchange.contacts-command", async (r) => {
    const me = await r.accounts.resolve(user);
    if (me === undefined) return [];
    const lines: string[] = [];
    for (const b of await exchangeRepo(r.read).bindingsOf(me)) {
      const id = b.a === me ? b.b : b.a;
      const peer = await r.accounts.jidOf(id);
      const card = await getCard(r.read, id);
      lines.push(card ? `${card.card.fn} <${peer}> (v${card.version})` : `<${peer}> (no card yet)`);
    }
    return lines.sort();
  });
}

/** The commands, in today's order; index.ts registers them on rt.adhoc at the switch. */
export function exchangeCommands(o: ExchangeCommandsOptions): Command[] {
  const { svc } = o;
  return [
    {
      node: commandNode("request-exchange"),
      name: "Exchange cards with…",
      run: askThen(
        "Exchange cards",
        { var: "jid", type: "jid-single", label: "Address (user@server)", required: true },
        async (ctx, input) => {
          // The normalized JID, not the form's text, goes back to the user.
          const { to } = await svc.requestExchange(ctx.user, input);
          return completed(`Asked ${to}. You will both get each other's card once ${to} accepts.`);
        },
      ),
    },
    {
      node: commandNode("answer-requests"),
      name: "Answer exchange requests",
      run: async (ctx, req, state) => {
        if (!state) {
          const all = await svc.listRequests(ctx.user, "incoming");
          if (all.length === 0) return completed("No pending exchange requests.");
          // The form lists as many requests as fit in one stanza (oldest first); the rest wait for a later run.
          const fit = o.budget.page(MAX_FORM_ITEMS);
          for (const p of all) if (!fit.add(xml("option", { label: p.peer }, xml("value", {}, p.id)))) break;
          const pending = all.slice(0, Math.max(1, fit.items.length));
          const left = all.length - pending.length;
          return {
            status: "executing",
            state: { stage: 1 },
            form: formElement({
              type: "form",
              title: "Exchange requests",
              fields: [
                {
                  var: "request",
                  type: "list-single",
                  label: "Request",
                  required: true,
                  options: pending.map((p) => ({ label: p.peer, value: p.id })),
                  values: [pending[0]?.id ?? ""],
                },
                {
                  var: "answer",
                  type: "list-single",
                  label: "Answer",
                  required: true,
                  options: [
                    { label: "Accept: exchange cards", value: "accept" },
                    { label: "Decline", value: "decline" },
                  ],
                  values: ["accept"],
                },
              ],
            }),
            ...(left > 0
              ? {
                  notes: [
                    {
                      type: "info" as const,
                      text: `${left} more request(s) not shown (too many for one form); answer these and run the command again, or use the IQ API, which pages (<exchange-requests/> with <set/>).`,
                    },
                  ],
                }
              : {}),
          };
        }
        const values = submitted(req);
        const id = firstValue(values, "request");
        const answer = firstValue(values, "answer");
        if (!id || (answer !== "accept" && answer !== "decline")) {
          throw new StanzaError("bad-request", "choose a request and accept or decline");
        }
        const r = await svc.answerRequest(ctx.user, id, answer === "accept");
        // The binding element as I see it names the peer.
        return completed(r ? `Cards exchanged with ${String(r.element.attrs.peer)}.` : "Declined.");
      },
    },
    {
      node: commandNode("exchange-code"),
      name: "Make an exchange code",
      run: async (ctx) => {
        const k = await svc.createCode(ctx.user);
        const minutes = Math.round(o.codeTtlSeconds / 60);
        return completed(
          `Your code: ${k.code} (valid ${minutes} min, once). Give it to the person you meet.`,
        );
      },
    },
    {
      node: commandNode("redeem-code"),
      name: "Redeem an exchange code",
      run: askThen(
        "Redeem an exchange code",
        { var: "code", type: "text-single", label: "Code", required: true },
        async (ctx, code) => {
          const r = await svc.redeemCode(ctx.user, code);
          return completed(`Cards exchanged with ${String(r.element.attrs.peer)}.`);
        },
      ),
    },
    {
      node: commandNode("contacts"),
      name: "List my contacts",
      run: async (ctx) => {
        const lines = await contactLines(o.read, ctx.user);
        if (lines.length === 0) return completed("You have not exchanged cards with anyone yet.");
        // As many lines as fit in one stanza, measured as the <value/> elements they become; a note says how
        // many were left out, since a generic client has no way to page a form.
        const fit = o.budget.page(MAX_FORM_ITEMS);
        for (const l of lines) if (!fit.add(xml("value", {}, l))) break;
        const shown = lines.slice(0, fit.items.length);
        const left = lines.length - shown.length;
        return {
          status: "completed",
          form: formElement({
            type: "result",
            title: `${lines.length} contact(s)`,
            fields: [{ var: "contacts", type: "text-multi", label: "Contacts", values: shown }],
          }),
          ...(left > 0
            ? {
                notes: [
                  {
                    type: "info" as const,
                    text: `${left} of ${lines.length} contacts not shown (too many for one answer); the IQ API pages them (<contacts/> with <set/>).`,
                  },
                ],
              }
            : {}),
        };
      },
    },
  ];
}

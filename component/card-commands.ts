/**
 * XEP-0050 ad-hoc commands for the core flows, so a generic XMPP client with ad-hoc support (Gajim, Psi,
 * Conversations, Profanity…) can use cardlink without knowing urn:cardlink:0: show and edit my card,
 * request an exchange, answer pending requests, make and redeem an exchange code, list my contacts.
 */
import { StanzaError } from "../stanzas/errors.js";
import { firstValue, formElement, parseForm, type FormField } from "../stanzas/dataforms.js";
import { normalizeCard, type Card } from "../stanzas/model/card.js";
import type { CommandRequest } from "../stanzas/adhoc.js";
import type { Cards } from "./cards.js";
import type { AppContext, Feature } from "./runtime/context.js";
import type { Exchange } from "./exchange.js";
import type { Command, CommandStep } from "./runtime/adhoc.js";
import type { IqContext } from "./runtime/router.js";
import { xml } from "../stanzas/xml.js";

const FORM_CARD = "urn:cardlink:form:card";
const NODE = (n: string): string => `urn:cardlink:cmd:${n}`;
/** Most list entries one command answer carries (the stanza budget may cut earlier). */
const MAX_FORM_ITEMS = 1000;

function emptyCard(fn: string): Card {
  return normalizeCard({ fn, nickname: [], tel: [], email: [], adr: [], url: [], impp: [], categories: [] });
}

/** The subset of a card the edit form covers; everything else is kept as it was. */
function cardFields(card: Card | undefined): FormField[] {
  const tel = (type: string): string | undefined =>
    card?.tel.find((t) => t.types.includes(type))?.uri.replace(/^tel:/, "");
  const v = (x: string | undefined): string[] => (x ? [x] : []);
  return [
    { var: "fn", type: "text-single", label: "Full name", required: true, values: v(card?.fn) },
    { var: "org", type: "text-single", label: "Organization", values: v(card?.org?.name) },
    { var: "title", type: "text-single", label: "Title", values: v(card?.title) },
    { var: "tel-work", type: "text-single", label: "Work phone", values: v(tel("work")) },
    { var: "tel-cell", type: "text-single", label: "Mobile phone", values: v(tel("cell")) },
    { var: "email", type: "text-single", label: "Email", values: v(card?.email[0]?.value) },
    { var: "url", type: "text-single", label: "Web site", values: v(card?.url[0]?.value) },
    { var: "note", type: "text-multi", label: "Note", values: card?.note ? card.note.split("\n") : [] },
  ];
}

function applyForm(base: Card | undefined, values: Map<string, string[]>): Card {
  const fn = firstValue(values, "fn");
  if (!fn) throw new StanzaError("bad-request", "the full name is required");
  const c: Card = base ? structuredClone(base) : emptyCard(fn);
  c.fn = fn;
  const set = <K extends "title" | "note">(k: K, v: string | undefined): void => {
    if (v) c[k] = v;
    else delete c[k];
  };
  set("title", firstValue(values, "title"));
  set("note", (values.get("note") ?? []).join("\n").trim() || undefined);
  const org = firstValue(values, "org");
  if (org) c.org = { name: org, units: c.org?.units ?? [] };
  else delete c.org;
  for (const type of ["work", "cell"]) {
    const number = firstValue(values, `tel-${type}`);
    c.tel = c.tel.filter((t) => !t.types.includes(type));
    if (number)
      c.tel.push({
        key: "",
        types: type === "cell" ? ["cell", "voice"] : ["work", "voice"],
        uri: `tel:${number}`,
      });
  }
  const email = firstValue(values, "email");
  c.email = email
    ? [{ key: "", types: c.email[0]?.types ?? [], value: email }, ...c.email.slice(1)]
    : c.email.slice(1);
  const url = firstValue(values, "url");
  c.url = url ? [{ key: "", types: c.url[0]?.types ?? [], value: url }, ...c.url.slice(1)] : c.url.slice(1);
  return normalizeCard(c);
}

/** A two-step command: ask for one required field, then act on the answer. */
function askThen(
  title: string,
  field: FormField & { var: string },
  act: (ctx: IqContext, value: string) => Promise<CommandStep>,
): Command["run"] {
  return async (ctx, req, state) => {
    if (!state) {
      return {
        status: "executing",
        state: { stage: 1 },
        form: formElement({ type: "form", title, fields: [field] }),
      };
    }
    const value = firstValue(submitted(req), field.var);
    if (!value) throw new StanzaError("bad-request", `${field.label ?? field.var} is required`);
    return act(ctx, value);
  };
}

function submitted(req: CommandRequest): Map<string, string[]> {
  if (!req.form) throw new StanzaError("bad-request", "this step needs the submitted form");
  return parseForm(req.form).values;
}

export class CardCommands implements Feature {
  readonly name = "card-commands";

  constructor(
    private readonly cards: Cards,
    private readonly exchange: Exchange,
  ) {}

  attach(app: AppContext): void {
    const { adhoc, store, config } = app;
    const done = (text: string): CommandStep => ({ status: "completed", notes: [{ type: "info", text }] });

    adhoc.register({
      node: NODE("show-card"),
      name: "Show my card",
      run: async (ctx) => {
        const stored = await store.cards.get(ctx.user);
        if (!stored) return done("You have no card yet. Use “Edit my card” to create one.");
        return {
          status: "completed",
          form: formElement({
            type: "result",
            formType: FORM_CARD,
            title: `Your card (version ${stored.version})`,
            fields: cardFields(stored.card).filter((f) => (f.values ?? []).length > 0),
          }),
        };
      },
    });

    adhoc.register({
      node: NODE("edit-card"),
      name: "Edit my card",
      run: async (ctx, req, state) => {
        const stored = await store.cards.get(ctx.user);
        if (!state) {
          return {
            status: "executing",
            state: { stage: 1 },
            form: formElement({
              type: "form",
              formType: FORM_CARD,
              title: "Edit your card",
              instructions:
                "Everyone you exchanged cards with gets the change (within what you share with them).",
              fields: cardFields(stored?.card),
            }),
          };
        }
        const card = this.cards.validate(applyForm(stored?.card, submitted(req)));
        const r = await this.cards.store(ctx.user, card);
        return done(
          r.attrs.changed === "true"
            ? `Saved as version ${r.attrs.version}; your contacts will be updated.`
            : "Nothing changed.",
        );
      },
    });

    adhoc.register({
      node: NODE("request-exchange"),
      name: "Exchange cards with…",
      run: askThen(
        "Exchange cards",
        { var: "jid", type: "jid-single", label: "Address (user@server)", required: true },
        async (ctx, input) => {
          // The normalized JID, not the form's text, goes back to the user.
          const to = String((await this.exchange.requestExchange(ctx.user, input)).attrs.to);
          return done(`Asked ${to}. You will both get each other's card once ${to} accepts.`);
        },
      ),
    });

    adhoc.register({
      node: NODE("answer-requests"),
      name: "Answer exchange requests",
      run: async (ctx, req, state) => {
        if (!state) {
          const all = await store.exchange.pendingFor(ctx.user, Date.now());
          if (all.length === 0) return done("No pending exchange requests.");
          // The form lists as many requests as fit in one stanza (oldest first); the rest wait for a later run.
          const fit = app.budget.page(MAX_FORM_ITEMS);
          for (const p of all) if (!fit.add(xml("option", { label: p.from }, xml("value", {}, p.id)))) break;
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
                  options: pending.map((p) => ({ label: p.from, value: p.id })),
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
        const r = await this.exchange.answerRequest(ctx.user, id, answer === "accept");
        return done(
          r ? `Cards exchanged with ${r.binding.a === ctx.user ? r.binding.b : r.binding.a}.` : "Declined.",
        );
      },
    });

    adhoc.register({
      node: NODE("exchange-code"),
      name: "Make an exchange code",
      run: async (ctx) => {
        const el = await this.exchange.createCode(ctx.user);
        const minutes = Math.round(config.exchange.codeTtlSeconds / 60);
        return done(
          `Your code: ${el.attrs.code} (valid ${minutes} min, once). Give it to the person you meet.`,
        );
      },
    });

    adhoc.register({
      node: NODE("redeem-code"),
      name: "Redeem an exchange code",
      run: askThen(
        "Redeem an exchange code",
        { var: "code", type: "text-single", label: "Code", required: true },
        async (ctx, code) => {
          const r = await this.exchange.redeemCode(ctx.user, code);
          return done(`Cards exchanged with ${r.binding.a === ctx.user ? r.binding.b : r.binding.a}.`);
        },
      ),
    });

    adhoc.register({
      node: NODE("contacts"),
      name: "List my contacts",
      run: async (ctx) => {
        const bindings = await store.exchange.bindings(ctx.user);
        if (bindings.length === 0) return done("You have not exchanged cards with anyone yet.");
        const lines: string[] = [];
        for (const b of bindings) {
          const peer = b.a === ctx.user ? b.b : b.a;
          const card = await store.cards.get(peer);
          lines.push(card ? `${card.card.fn} <${peer}> (v${card.version})` : `<${peer}> (no card yet)`);
        }
        lines.sort();
        // As many lines as fit in one stanza, measured as the <value/> elements they become; a note says how
        // many were left out, since a generic client has no way to page a form.
        const fit = app.budget.page(MAX_FORM_ITEMS);
        for (const l of lines) if (!fit.add(xml("value", {}, l))) break;
        const shown = lines.slice(0, fit.items.length);
        const left = lines.length - shown.length;
        return {
          status: "completed",
          form: formElement({
            type: "result",
            title: `${bindings.length} contact(s)`,
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
    });
  }
}

/**
 * XEP-0050 ad-hoc commands of the cards feature (docs/REDESIGN.md §1.2): show and edit my card, for a generic
 * XMPP client that does not know urn:cardlink:0. The forms, fields, notes and errors are the legacy
 * core's (component/card-commands.ts) byte for byte; the reads and the write go through this feature's service on the
 * new core.
 */
import { StanzaError } from "../../../stanzas/errors.js";
import { firstValue, formElement, parseForm, type FormField } from "../../../stanzas/dataforms.js";
import { normalizeCard, type Card, type CardLimits } from "../../../stanzas/model/card.js";
import type { CommandRequest } from "../../../stanzas/adhoc.js";
import type { Command, CommandStep } from "../../runtime/adhoc.js";
import type { BareJid } from "../../runtime/accounts/api.js";
import type { Reader, Uow } from "../../runtime/uow.js";
import { cardsRepo, type StoredCard } from "./repo.js";
import { checkRenderings, storeCard, validateCard, type CardStored } from "./service.js";
import { askForm } from "../../runtime/commands.js";

export const FORM_CARD = "urn:cardlink:form:card";
export const NODE = (n: string): string => `urn:cardlink:cmd:${n}`;

function emptyCard(fn: string): Card {
  return normalizeCard({ fn, nickname: [], tel: [], email: [], adr: [], url: [], impp: [], categories: [] });
}

/** The subset of a card the edit form covers; everything else is kept as it was. */
export function cardFields(card: Card | undefined): FormField[] {
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

/** The submitted form over the stored card (fields the form does not cover are kept). */
export function applyForm(base: Card | undefined, values: Map<string, string[]>): Card {
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

export function submitted(req: CommandRequest): Map<string, string[]> {
  if (!req.form) throw new StanzaError("bad-request", "this step needs the submitted form");
  return parseForm(req.form).values;
}

export const done = (text: string): CommandStep => ({ status: "completed", notes: [{ type: "info", text }] });

export interface CardCommandsOptions {
  uow: Uow;
  read: Reader;
  limits: CardLimits;
  /** Told after a card was stored (index.ts: metrics and the card-updated log line, as the IQ route). */
  stored?: (user: BareJid, r: CardStored) => void;
}

/** The own stored card; reads only (an unknown user is not created). */
function ownCard(read: Reader, user: BareJid): Promise<StoredCard | undefined> {
  return read("card.own", async (r) => {
    const me = await r.accounts.resolve(user);
    return me === undefined ? undefined : cardsRepo(r.read).get(me);
  });
}

/** The commands, in today's order; index.ts registers them on rt.adhoc at the switch. */
export function cardCommands(o: CardCommandsOptions): Command[] {
  return [
    {
      node: NODE("show-card"),
      name: "Show my card",
      run: async (ctx) => {
        const stored = await ownCard(o.read, ctx.user);
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
    },
    {
      node: NODE("edit-card"),
      name: "Edit my card",
      run: async (ctx, req, state) => {
        const stored = await ownCard(o.read, ctx.user);
        if (!state) {
          return askForm({
            formType: FORM_CARD,
            title: "Edit your card",
            instructions:
              "Everyone you exchanged cards with gets the change (within what you share with them).",
            fields: cardFields(stored?.card),
          });
        }
        // Validated and measured outside the unit of work, like the IQ route (no lock held for parsing).
        const card = validateCard(applyForm(stored?.card, submitted(req)), o.limits);
        checkRenderings(card, o.limits);
        const r = await storeCard(o, ctx.user, card);
        o.stored?.(ctx.user, r);
        return done(
          r.changed ? `Saved as version ${r.version}; your contacts will be updated.` : "Nothing changed.",
        );
      },
    },
  ];
}

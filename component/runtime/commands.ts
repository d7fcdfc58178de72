/**
 * Helpers for the features' XEP-0050 commands (a public runtime file: features import values from it, while
 * runtime/adhoc.ts, the registry, is types only to them). The rules every command shares: its node name, how many
 * list entries one form may carry before the stanza budget cuts, the first step's form, the completed step, the
 * submitted form.
 */
import type { CommandRequest } from "../../stanzas/adhoc.js";
import { formElement, type Form } from "../../stanzas/dataforms.js";
import { StanzaError } from "../../stanzas/errors.js";
import type { Element } from "../../stanzas/xml.js";
import type { CommandStep } from "./adhoc.js";

/** A feature command's node: `urn:cardlink:cmd:<name>` (PROTOCOL §13). */
export const commandNode = (name: string): string => `urn:cardlink:cmd:${name}`;

/** Most list entries one command form carries (the stanza budget may cut earlier). */
export const MAX_FORM_ITEMS = 1000;

/** The last step: completed, with one info note. */
export const completed = (text: string): CommandStep => ({
  status: "completed",
  notes: [{ type: "info", text }],
});

/** The submitted form of a step that needs one (else bad-request, as every feature's commands answer it). */
export function submittedForm(req: CommandRequest): Element {
  if (!req.form) throw new StanzaError("bad-request", "this step needs the submitted form");
  return req.form;
}

/**
 * The first step of a command: executing, at stage 1, with a form to fill (`type` is always `form`) and, where a
 * list in it was cut to the stanza budget, the notes that say so.
 */
export function askForm(form: Omit<Form, "type">, notes?: CommandStep["notes"]): CommandStep {
  return {
    status: "executing",
    state: { stage: 1 },
    form: formElement({ type: "form", ...form }),
    ...(notes ? { notes } : {}),
  };
}

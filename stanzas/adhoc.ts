/** XEP-0050 Ad-Hoc Commands (https://xmpp.org/extensions/xep-0050.html, 1.3). Pure builders and parsers. */
import { badRequest, quote } from "./errors.js";
import { NS } from "./ns.js";
import { xml, type Element } from "./xml.js";

export type CommandAction = "execute" | "next" | "prev" | "complete" | "cancel";
export type CommandStatus = "executing" | "completed" | "canceled";

export interface CommandRequest {
  node: string;
  sessionid?: string;
  action: CommandAction;
  form?: Element;
}

export function parseCommand(el: Element): CommandRequest {
  const node = el.attrs.node;
  if (!node) throw badRequest("command: the node attribute is required");
  const action = (el.attrs.action ?? "execute") as CommandAction;
  if (!["execute", "next", "prev", "complete", "cancel"].includes(action)) {
    throw badRequest(`command: unknown action '${quote(action)}'`);
  }
  const form = el.getChild("x", NS.DATA);
  return {
    node,
    action,
    ...(el.attrs.sessionid ? { sessionid: el.attrs.sessionid } : {}),
    ...(form ? { form } : {}),
  };
}

export interface CommandResponse {
  node: string;
  sessionid: string;
  status: CommandStatus;
  /** Allowed next actions while executing; the first is the default. */
  actions?: Array<"next" | "prev" | "complete">;
  notes?: Array<{ type: "info" | "warn" | "error"; text: string }>;
  form?: Element;
}

export function commandElement(r: CommandResponse): Element {
  return xml(
    "command",
    { xmlns: NS.COMMANDS, node: r.node, sessionid: r.sessionid, status: r.status },
    r.actions && r.actions.length > 0
      ? xml("actions", { execute: r.actions[0] }, ...r.actions.map((a) => xml(a)))
      : null,
    ...(r.notes ?? []).map((n) => xml("note", { type: n.type }, n.text)),
    r.form ?? null,
  );
}

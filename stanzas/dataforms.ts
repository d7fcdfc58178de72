/** XEP-0004 Data Forms (https://xmpp.org/extensions/xep-0004.html, 2.13). Pure builders and parsers. */
import { badRequest } from "./errors.js";
import { NS } from "./ns.js";
import { xml, type Element } from "./xml.js";

export type FieldType =
  | "boolean"
  | "fixed"
  | "hidden"
  | "jid-multi"
  | "jid-single"
  | "list-multi"
  | "list-single"
  | "text-multi"
  | "text-private"
  | "text-single";

export interface FormField {
  var?: string;
  type?: FieldType;
  label?: string;
  desc?: string;
  required?: boolean;
  values?: string[];
  options?: Array<{ label?: string; value: string }>;
}

export interface Form {
  type: "form" | "submit" | "cancel" | "result";
  formType?: string;
  title?: string;
  instructions?: string;
  fields: FormField[];
}

export function formElement(form: Form): Element {
  const fields: FormField[] = form.formType
    ? [{ var: "FORM_TYPE", type: "hidden", values: [form.formType] }, ...form.fields]
    : form.fields;
  return xml(
    "x",
    { xmlns: NS.DATA, type: form.type },
    form.title ? xml("title", {}, form.title) : null,
    form.instructions ? xml("instructions", {}, form.instructions) : null,
    ...fields.map((f) =>
      xml(
        "field",
        { var: f.var, type: f.type, label: f.label },
        f.desc ? xml("desc", {}, f.desc) : null,
        f.required ? xml("required") : null,
        ...(f.values ?? []).map((v) => xml("value", {}, v)),
        ...(f.options ?? []).map((o) => xml("option", { label: o.label }, xml("value", {}, o.value))),
      ),
    ),
  );
}

/** Parses a submitted form into var → values. FORM_TYPE is returned separately. */
export function parseForm(x: Element): { type: string; formType?: string; values: Map<string, string[]> } {
  if (!x.is("x", NS.DATA)) throw badRequest("expected a jabber:x:data form");
  const values = new Map<string, string[]>();
  let formType: string | undefined;
  for (const f of x.getChildren("field")) {
    const name = f.attrs.var;
    if (!name) continue;
    const vals = f.getChildren("value").map((v) => v.getText());
    if (name === "FORM_TYPE") formType = vals[0];
    else values.set(name, vals);
  }
  return { type: x.attrs.type ?? "", ...(formType !== undefined ? { formType } : {}), values };
}

export function firstValue(values: Map<string, string[]>, name: string): string | undefined {
  const v = values.get(name)?.[0];
  return v === undefined || v === "" ? undefined : v;
}

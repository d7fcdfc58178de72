/**
 * Update-request forms (stanzas/update-request.ts; PROTOCOL §20.12): the pre-filled update form and the pick form
 * against golden XML (test/stanzas/golden/update-request/), the XEP-0004 validation of a submission (types,
 * required, unknown fields, FORM_TYPE, options) with errors naming the field, and applying an answer to an entry.
 */
import { expect } from "chai";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { StanzaError } from "../../stanzas/errors.js";
import { DEFAULT_CARD_LIMITS, normalizeCard, type Card } from "../../stanzas/model/card.js";
import {
  PICK_FORM_TYPE,
  UPDATE_FIELDS,
  UPDATE_FORM_TYPE,
  applyPicked,
  applyUpdate,
  cardJid,
  parseRequestForm,
  pickFields,
  pickForm,
  pickItems,
  updateForm,
  updateValues,
  validateSubmission,
} from "../../stanzas/update-request.js";
import { parseXml, type Element } from "../../stanzas/xml.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const golden = (f: string): string =>
  readFileSync(path.join(here, "../../../test/stanzas/golden/update-request", f), "utf8").trim();

const card = (c: Partial<Card>): Card =>
  normalizeCard({
    fn: "",
    nickname: [],
    tel: [],
    email: [],
    adr: [],
    url: [],
    impp: [],
    categories: [],
    ...c,
  });

const ENTRY = card({
  fn: "Bob Example",
  org: { name: "Acme", units: ["R&D"] },
  tel: [{ key: "", types: ["cell"], uri: "tel:+1-555-0100" }],
  email: [{ key: "", types: ["work"], value: "bob@acme.example" }],
  impp: [{ key: "", types: [], uri: "xmpp:bob@example.org" }],
  note: "met in Lyon\nlikes tea",
});
const BOB = card({
  fn: "Robert Example",
  title: "Engineer",
  tel: [
    { key: "", types: ["cell"], uri: "tel:+1-555-0100" },
    { key: "", types: ["home"], uri: "tel:+1-555-0111" },
  ],
  email: [{ key: "", types: ["home"], value: "bob@home.example" }],
  bday: "--04-01",
});

/** A submitted form: `fields` var → values, FORM_TYPE first. */
const submit = (formType: string | undefined, fields: Array<[string, string[]]>, type = "submit"): Element =>
  parseXml(
    `<x xmlns='jabber:x:data' type='${type}'>` +
      (formType === undefined ? "" : `<field var='FORM_TYPE'><value>${formType}</value></field>`) +
      fields
        .map(([v, vals]) => `<field var='${v}'>${vals.map((x) => `<value>${x}</value>`).join("")}</field>`)
        .join("") +
      "</x>",
  );
const refused = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    expect(e).to.be.instanceOf(StanzaError);
    expect((e as StanzaError).condition).to.equal("bad-request");
    return (e as StanzaError).message;
  }
  throw new Error("expected a bad-request");
};

describe("stanzas/update-request (XEP-0004 update and pick forms)", () => {
  it("builds the pre-filled update form (golden): hidden FORM_TYPE, typed fields, labels, desc, required", () => {
    const el = updateForm(updateValues(ENTRY, "bob@example.org"), {
      title: "Your details in Alice's address book",
      instructions: "Check and complete.",
    });
    expect(el.toString()).to.equal(golden("update-form.xml"));
    const fn = el.getChildren("field").find((f) => f.attrs.var === "fn");
    expect(fn?.attrs.type).to.equal("text-single");
    expect(fn?.getChild("required")).to.not.equal(undefined);
  });

  it("builds the pick form (golden): one list-multi field, an option per detail of the card", () => {
    const el = pickForm(pickItems(BOB), { title: "Send your details to alice@example.org" });
    expect(el.toString()).to.equal(golden("pick-form.xml"));
    const items = el.getChildren("field").find((f) => f.attrs.var === "items");
    expect(items?.attrs.type).to.equal("list-multi");
    expect(items?.getChildren("option")).to.have.length(6);
  });

  it("parses its own form back as a submission: the values round-trip", () => {
    const v = updateValues(ENTRY, "bob@example.org");
    const x = parseXml(updateForm(v, { title: "t" }).toString().replace(`type="form"`, `type="submit"`));
    const back = validateSubmission(x, UPDATE_FORM_TYPE, UPDATE_FIELDS);
    for (const f of UPDATE_FIELDS) expect(back.get(f.var), f.var).to.deep.equal(v.get(f.var));
    expect(applyUpdate(ENTRY, back, DEFAULT_CARD_LIMITS)).to.deep.equal(ENTRY);
  });

  it("refuses a submission with errors that name the field", () => {
    const ok: Array<[string, string[]]> = [["fn", ["Bob"]]];
    expect(refused(() => validateSubmission(undefined, UPDATE_FORM_TYPE, UPDATE_FIELDS))).to.equal(
      "the answer needs a jabber:x:data form",
    );
    expect(
      refused(() =>
        validateSubmission(submit(UPDATE_FORM_TYPE, ok, "form"), UPDATE_FORM_TYPE, UPDATE_FIELDS),
      ),
    ).to.equal("the form must be of type 'submit', not 'form'");
    expect(refused(() => validateSubmission(submit("urn:x", ok), UPDATE_FORM_TYPE, UPDATE_FIELDS))).to.equal(
      `FORM_TYPE must be '${UPDATE_FORM_TYPE}', not 'urn:x'`,
    );
    expect(
      refused(() => validateSubmission(submit(undefined, ok), UPDATE_FORM_TYPE, UPDATE_FIELDS)),
    ).to.equal(`FORM_TYPE must be '${UPDATE_FORM_TYPE}', not ''`);
    expect(
      refused(() =>
        validateSubmission(
          submit(UPDATE_FORM_TYPE, [...ok, ["salary", ["1"]]]),
          UPDATE_FORM_TYPE,
          UPDATE_FIELDS,
        ),
      ),
    ).to.equal("field 'salary' is not part of this form");
    expect(
      refused(() =>
        validateSubmission(submit(UPDATE_FORM_TYPE, [["org", ["Acme"]]]), UPDATE_FORM_TYPE, UPDATE_FIELDS),
      ),
    ).to.equal("field 'fn' (Full name) is required");
    expect(
      refused(() =>
        validateSubmission(submit(UPDATE_FORM_TYPE, [["fn", [" "]]]), UPDATE_FORM_TYPE, UPDATE_FIELDS),
      ),
    ).to.equal("field 'fn' (Full name) is required");
    expect(
      refused(() =>
        validateSubmission(submit(UPDATE_FORM_TYPE, [["fn", ["A", "B"]]]), UPDATE_FORM_TYPE, UPDATE_FIELDS),
      ),
    ).to.equal("field 'fn' (Full name) takes one value, not 2");
    expect(
      refused(() =>
        validateSubmission(
          submit(UPDATE_FORM_TYPE, [...ok, ["jid", ["not a jid"]]]),
          UPDATE_FORM_TYPE,
          UPDATE_FIELDS,
        ),
      ),
    ).to.equal("field 'jid' (Your address): 'not a jid' is not a bare JID (user@server)");
    expect(
      refused(() =>
        validateSubmission(submit(UPDATE_FORM_TYPE, [...ok, ["fn", ["B"]]]), UPDATE_FORM_TYPE, UPDATE_FIELDS),
      ),
    ).to.equal("field 'fn' (Full name) is given twice");
    const defs = pickFields(pickItems(BOB));
    expect(
      refused(() =>
        validateSubmission(submit(PICK_FORM_TYPE, [["items", ["tel:nope"]]]), PICK_FORM_TYPE, defs),
      ),
    ).to.equal("field 'items' (Details to send): 'tel:nope' is not one of its options");
    expect(
      refused(() =>
        validateSubmission(submit(PICK_FORM_TYPE, [["items", ["fn", "fn"]]]), PICK_FORM_TYPE, defs),
      ),
    ).to.equal("field 'items' (Details to send) names an option twice");
    expect(
      refused(() => validateSubmission(submit(PICK_FORM_TYPE, [["items", []]]), PICK_FORM_TYPE, defs)),
    ).to.equal("field 'items' (Details to send) is required");
    // A value the card model refuses is named by its form field.
    const bad = validateSubmission(
      submit(UPDATE_FORM_TYPE, [["fn", ["x".repeat(5000)]]]),
      UPDATE_FORM_TYPE,
      UPDATE_FIELDS,
    );
    expect(() => applyUpdate(ENTRY, bad, DEFAULT_CARD_LIMITS)).to.throw(/field 'fn'/);
  });

  it("applies an update: carried fields replace, left-out fields stay, types of kept numbers stay", () => {
    const values = validateSubmission(
      submit(UPDATE_FORM_TYPE, [
        ["fn", ["Robert Example"]],
        ["tel", ["tel:+1-555-0100", "tel:+1-555-0199"]],
        ["org", []],
        ["jid", ["robert@example.org"]],
      ]),
      UPDATE_FORM_TYPE,
      UPDATE_FIELDS,
    );
    const next = applyUpdate(ENTRY, values, DEFAULT_CARD_LIMITS);
    expect(next.fn).to.equal("Robert Example");
    expect(next.tel.map((t) => [t.uri, t.types])).to.deep.equal([
      ["tel:+1-555-0100", ["cell"]],
      ["tel:+1-555-0199", []],
    ]);
    expect(next.org).to.equal(undefined);
    expect(next.email).to.deep.equal(ENTRY.email);
    expect(next.note).to.equal(ENTRY.note);
    expect(cardJid(next)).to.equal("robert@example.org");
  });

  it("applies picked details: scalars replace, an item with the same value takes the source's types, new items are added", () => {
    const items = pickItems(BOB);
    const home = items.find((i) => i.label.includes("555-0111"))?.value as string;
    const cell = items.find((i) => i.label.includes("555-0100"))?.value as string;
    const next = applyPicked(ENTRY, BOB, ["fn", "bday", cell, home], DEFAULT_CARD_LIMITS);
    expect(next.fn).to.equal("Robert Example");
    expect(next.bday).to.equal("--04-01");
    expect(next.tel.map((t) => t.uri)).to.deep.equal(["tel:+1-555-0100", "tel:+1-555-0111"]);
    expect(next.email).to.deep.equal(ENTRY.email);
    expect(next.title).to.equal(undefined);
  });

  it("parses the request's form attribute", () => {
    expect(parseRequestForm(undefined)).to.equal("form");
    expect(parseRequestForm("pick")).to.equal("pick");
    expect(refused(() => parseRequestForm("fax"))).to.equal(
      "'form' must be form, address or pick, not 'fax'",
    );
  });
});

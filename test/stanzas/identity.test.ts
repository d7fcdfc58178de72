/**
 * stanzas/identity.ts (urn:cardlink:identity:0, XEP-0283 <moved/>, the services confirmation form): normalisers and
 * golden builders/parsers. Goldens in test/stanzas/golden/identity/: each builder's output is compared byte for byte,
 * and each parser reads the golden back (the form's submission, the moved notice).
 */
import { expect } from "chai";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { StanzaError } from "../../stanzas/errors.js";
import {
  manualListForm,
  movedElement,
  normalizeEmail,
  normalizeTel,
  parseCode,
  parseMoved,
  parseService,
  parseServicesSubmit,
  serviceElement,
  servicesForm,
  type ServiceView,
} from "../../stanzas/identity.js";
import { parseXml } from "../../stanzas/xml.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const golden = (f: string): string =>
  readFileSync(path.join(here, "../../../test/stanzas/golden/identity", f), "utf8").trimEnd();
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

const BANK: ServiceView = {
  id: "s3",
  kind: "tel",
  identifier: "+491701111111",
  service: "Bank",
  provider: "Example Bank",
  remark: "payment",
  receivedAt: Date.parse("2026-12-01T10:00:00Z"),
  status: "manual",
  mode: "manual",
  newIdentifier: "+491702222222",
  reason: "type 'payment' is updated by hand",
  contact: "+49 30 1234",
};

describe("stanzas/identity (urn:cardlink:identity:0)", () => {
  it("normalises phone numbers to E.164 and refuses national or malformed ones", () => {
    expect(normalizeTel("+49 (170) 555-0101")).to.equal("+491705550101");
    expect(normalizeTel("0049 170 5550101")).to.equal("+491705550101");
    expect(normalizeTel("+1.415.555.0100")).to.equal("+14155550100");
    expect(refused(() => normalizeTel("0170 5550101"))).to.match(/E\.164/);
    expect(refused(() => normalizeTel("+0 170 5550101"))).to.match(/E\.164/);
    expect(refused(() => normalizeTel("+49 170 555 0101 99999"))).to.match(/at most 15/);
    expect(refused(() => normalizeTel("+49abc"))).to.match(/E\.164/);
  });

  it("normalises e-mail addresses (lower case) and refuses what is not one", () => {
    expect(normalizeEmail("  Erin@Example.ORG ")).to.equal("erin@example.org");
    for (const bad of [
      "erin",
      "erin@example",
      "a@b@example.org",
      "er in@example.org",
      `${"a".repeat(65)}@x.org`,
    ])
      refused(() => normalizeEmail(bad));
  });

  it("reads codes and service registration messages", () => {
    expect(parseCode(" 012345 ")).to.equal("012345");
    refused(() => parseCode("12a456"));
    expect(
      parseService(parseXml("<service service=' Chat ' provider='chatco' remark='social'/>")),
    ).to.deep.equal({ service: "Chat", provider: "chatco", remark: "social" });
    expect(refused(() => parseService(parseXml("<service provider='x'/>")))).to.match(/'service'/);
    expect(refused(() => parseService(parseXml("<service service='a&#x9;b'/>")))).to.match(/control/);
    refused(() => parseService(parseXml(`<service service='x' remark='${"r".repeat(65)}'/>`)));
  });

  it("builds the confirmation form (golden): automatic items selected by default, manual ones as fixed text", () => {
    const form = servicesForm({
      update: "u1",
      from: "+491701111111",
      to: "+491702222222",
      automatic: [
        { id: "s1", service: "Chat", provider: "chatco" },
        { id: "s2", service: "Shop", provider: "" },
      ],
      manual: [{ id: "s3", service: "Bank", provider: "Example Bank" }],
    });
    expect(form.toString()).to.equal(golden("services-form.xml"));
  });

  it("parses a submission with an item deselected (golden), and refuses a wrong form", () => {
    expect(parseServicesSubmit(parseXml(golden("services-submit.xml")))).to.deep.equal({
      update: "u1",
      selected: ["s1"],
    });
    // The form as sent is not a submission.
    expect(refused(() => parseServicesSubmit(parseXml(golden("services-form.xml"))))).to.match(/submit/);
    expect(
      refused(() =>
        parseServicesSubmit(parseXml(golden("services-submit.xml").replace("#services-update", "#other"))),
      ),
    ).to.match(/FORM_TYPE/);
    // Nothing selected is a valid answer: every automatic item becomes manual.
    expect(
      parseServicesSubmit(parseXml(golden("services-submit.xml").replace("<value>s1</value>", ""))).selected,
    ).to.deep.equal([]);
  });

  it("builds and parses XEP-0283's <moved/> (golden)", () => {
    const el = movedElement("old@example.org", "new@example.org");
    expect(el.toString()).to.equal(golden("moved.xml"));
    expect(parseMoved(parseXml(golden("moved.xml")))).to.deep.equal({
      oldJid: "old@example.org",
      newJid: "new@example.org",
    });
    refused(() => parseMoved(parseXml("<moved xmlns='urn:xmpp:moved:1'><new-jid>x@y</new-jid></moved>")));
  });

  it("builds a service item and the manual list form (golden)", () => {
    expect(serviceElement(BANK).toString()).to.equal(golden("service.xml"));
    expect(manualListForm([BANK]).toString()).to.equal(golden("manual-list.xml"));
  });
});

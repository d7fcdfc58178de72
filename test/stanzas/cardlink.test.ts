import { expect } from "chai";
import {
  activeDeviceElement,
  bindingElement,
  parseActiveDevice,
  parseBool,
  parseDevice,
  parseNonNegativeInt,
  parseSharePolicy,
  resyncElement,
  sharePolicyElement,
  updateElement,
  updatesElement,
} from "../../stanzas/cardlink.js";
import { StanzaError } from "../../stanzas/errors.js";
import { parseXml } from "../../stanzas/xml.js";

const el = (s: string) => parseXml(s);
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

describe("stanzas/cardlink (urn:cardlink:0)", () => {
  it("parses a device registration with push token, topic and key", () => {
    const key = Buffer.alloc(32, 1).toString("base64");
    const d = parseDevice(
      el(
        `<device xmlns='urn:cardlink:0' id='inst-1' platform='ios' name='Phone'><push token='abc' topic='org.example.app' key='${key}'/></device>`,
      ),
    );
    expect(d).to.deep.equal({
      deviceId: "inst-1",
      platform: "ios",
      name: "Phone",
      push: { token: "abc", topic: "org.example.app", key },
    });
    expect(parseDevice(el("<device xmlns='urn:cardlink:0' id='x'/>"))).to.deep.equal({
      deviceId: "x",
      platform: "other",
    });
  });

  it("refuses bad devices with a text that names the problem", () => {
    expect(refused(() => parseDevice(el("<device xmlns='urn:cardlink:0'/>")))).to.match(/'id'/);
    expect(refused(() => parseDevice(el("<device xmlns='urn:cardlink:0' id='a b'/>")))).to.match(/device id/);
    expect(
      refused(() => parseDevice(el("<device xmlns='urn:cardlink:0' id='a' platform='palm'/>"))),
    ).to.match(/platform/);
    expect(refused(() => parseDevice(el("<device xmlns='urn:cardlink:0' id='a'><push/></device>")))).to.match(
      /token/,
    );
    expect(
      refused(() =>
        parseDevice(el("<device xmlns='urn:cardlink:0' id='a'><push token='t' key='c2hvcnQ='/></device>")),
      ),
    ).to.match(/32 bytes/);
  });

  it("parses share policies: none = everything, fields and types otherwise", () => {
    expect(parseSharePolicy(el("<share xmlns='urn:cardlink:0' holder='b@x'/>"))).to.equal(null);
    expect(
      parseSharePolicy(el("<share xmlns='urn:cardlink:0'><field>tel</field><type>WORK</type></share>")),
    ).to.deep.equal({
      fields: ["tel"],
      types: ["work"],
    });
    expect(
      refused(() => parseSharePolicy(el("<share xmlns='urn:cardlink:0'><field>ssn</field></share>"))),
    ).to.match(/ssn/);
    expect(sharePolicyElement(null).toString()).to.equal('<share all="true"/>');
    expect(sharePolicyElement({ fields: ["fn", "email"] }).toString()).to.equal(
      "<share><field>fn</field><field>email</field></share>",
    );
  });

  it("builds bindings and updates", () => {
    const b = bindingElement({
      id: "b1",
      peer: "bob@example.org",
      createdAt: Date.UTC(2026, 0, 2, 3, 4, 5),
      via: "code",
      devices: [
        { jid: "alice@example.org", ids: ["a1"] },
        { jid: "bob@example.org", ids: [] },
      ],
    });
    expect(b.toString()).to.equal(
      '<binding xmlns="urn:cardlink:0" id="b1" peer="bob@example.org" created="2026-01-02T03:04:05.000Z" via="code">' +
        '<devices jid="alice@example.org"><device id="a1"/></devices><devices jid="bob@example.org"/></binding>',
    );
    const u = updatesElement([
      updateElement({ id: "card:alice@example.org:7", kind: "card", seq: 7 }, parseXml("<x/>")),
    ]);
    expect(u.toString()).to.equal(
      '<updates xmlns="urn:cardlink:0"><update id="card:alice@example.org:7" kind="card" seq="7"><x/></update></updates>',
    );
  });

  it("<active-device/>: parsed to its device id, refused with §4.1's texts, echoed byte for byte", () => {
    expect(parseActiveDevice(el("<active-device xmlns='urn:cardlink:0' id='bob-pixel'/>"))).to.equal(
      "bob-pixel",
    );
    expect(parseActiveDevice(el("<active-device xmlns='urn:cardlink:0' id='a.b_c:d-1'/>"))).to.equal(
      "a.b_c:d-1",
    );
    expect(refused(() => parseActiveDevice(el("<active-device xmlns='urn:cardlink:0'/>")))).to.equal(
      "<active-device/> needs a 'id' attribute",
    );
    expect(refused(() => parseActiveDevice(el("<active-device xmlns='urn:cardlink:0' id=''/>")))).to.equal(
      "<active-device/> needs a 'id' attribute",
    );
    for (const bad of ["a b", "x".repeat(129), "é", "a/b"]) {
      expect(
        refused(() => parseActiveDevice(el(`<active-device xmlns='urn:cardlink:0' id='${bad}'/>`))),
      ).to.equal("device id must be 1–128 characters of A–Z a–z 0–9 . _ : -");
    }
    expect(activeDeviceElement("bob-pixel").toString()).to.equal(
      '<active-device xmlns="urn:cardlink:0" id="bob-pixel"/>',
    );
    // What the client sent comes back unchanged: parse ∘ build is the identity on valid ids.
    expect(parseActiveDevice(activeDeviceElement("x".repeat(128)))).to.equal("x".repeat(128));
  });

  it("a resync update (§10.1 kind 'resync'): id resync:<device>:<seq>, one <resync reason/> child", () => {
    const u = updatesElement([
      updateElement({ id: "resync:bob-pixel:4711", kind: "resync", seq: 4711 }, resyncElement("idle")),
    ]);
    expect(u.toString()).to.equal(
      '<updates xmlns="urn:cardlink:0"><update id="resync:bob-pixel:4711" kind="resync" seq="4711">' +
        '<resync xmlns="urn:cardlink:0" reason="idle"/></update></updates>',
    );
  });

  it("parses booleans and counters strictly", () => {
    expect(parseBool("true", "accept")).to.equal(true);
    expect(parseBool("0", "accept")).to.equal(false);
    expect(refused(() => parseBool("yes", "accept"))).to.match(/accept/);
    expect(parseNonNegativeInt(undefined, "since")).to.equal(undefined);
    expect(parseNonNegativeInt("42", "since")).to.equal(42);
    expect(refused(() => parseNonNegativeInt("-1", "since"))).to.match(/since/);
    expect(refused(() => parseNonNegativeInt("11", "max", 10))).to.match(/0 to 10/);
  });
});

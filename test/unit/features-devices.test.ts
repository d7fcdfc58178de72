/**
 * features/devices `activateDevice` (issue 8 S12, PROTOCOL §10.7): the IQ's checks and answers over a stand-in
 * presence that records declarations. Pure: the declaration itself is runtime/presence.ts's (presence.test.ts).
 */
import { expect } from "chai";
import { activateDevice } from "../../component/features/devices/index.js";
import { parseJid, type Jid } from "../../component/runtime/jid.js";
import { StanzaError } from "../../stanzas/errors.js";
import { parseXml } from "../../stanzas/xml.js";

const jid = (s: string): Jid => {
  const j = parseJid(s);
  if (!j) throw new Error(`bad jid ${s}`);
  return j;
};

describe("features/devices: <active-device/> (PROTOCOL §10.7)", () => {
  const calls: Array<[string, string, string]> = [];
  const presence = {
    async declare(bare: string, full: string, deviceId: string): Promise<"declared" | "no-device"> {
      calls.push([bare, full, deviceId]);
      return deviceId === "bob-pixel" ? "declared" : "no-device";
    },
  };
  const refusal = async (from: string, xml: string): Promise<[string, string, string]> => {
    try {
      await activateDevice(presence, jid(from), parseXml(xml));
    } catch (e) {
      expect(e).to.be.instanceOf(StanzaError);
      const err = e as StanzaError;
      return [err.type, err.condition, err.message];
    }
    throw new Error("expected an error");
  };
  beforeEach(() => (calls.length = 0));

  it("declares the sending resource and echoes the element", async () => {
    const r = await activateDevice(
      presence,
      jid("bob@example.org/pixel"),
      parseXml("<active-device xmlns='urn:cardlink:0' id='bob-pixel'/>"),
    );
    expect(r.toString()).to.equal('<active-device xmlns="urn:cardlink:0" id="bob-pixel"/>');
    expect(calls).to.deep.equal([["bob@example.org", "bob@example.org/pixel", "bob-pixel"]]);
  });

  it("answers each of §10.7's errors with its type, condition and text; nothing is declared", async () => {
    expect(await refusal("bob@example.org/pixel", "<active-device xmlns='urn:cardlink:0'/>")).to.deep.equal([
      "modify",
      "bad-request",
      "<active-device/> needs a 'id' attribute",
    ]);
    expect(
      await refusal("bob@example.org/pixel", "<active-device xmlns='urn:cardlink:0' id='a b'/>"),
    ).to.deep.equal(["modify", "bad-request", "device id must be 1–128 characters of A–Z a–z 0–9 . _ : -"]);
    expect(
      await refusal("bob@example.org", "<active-device xmlns='urn:cardlink:0' id='bob-pixel'/>"),
    ).to.deep.equal(["modify", "bad-request", "<active-device/> must come from the resource it names"]);
    expect(calls).to.deep.equal([]);
    expect(
      await refusal("bob@example.org/pixel", "<active-device xmlns='urn:cardlink:0' id='nope'/>"),
    ).to.deep.equal(["cancel", "item-not-found", "you have no device 'nope'; register it first"]);
    // The unknown id is quoted like any client input (64 characters, then …).
    const long = "x".repeat(100);
    expect(
      (await refusal("bob@example.org/pixel", `<active-device xmlns='urn:cardlink:0' id='${long}'/>`))[2],
    ).to.equal(`you have no device '${"x".repeat(64)}…'; register it first`);
  });
});

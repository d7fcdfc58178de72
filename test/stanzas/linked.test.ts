import { expect } from "chai";
import { StanzaError } from "../../stanzas/errors.js";
import {
  avatarDataPublish,
  avatarMetadataPublish,
  nickPublish,
  parseAccountRef,
  parseProfileChange,
  parseSettings,
  privilegedIq,
  privilegedOutcome,
  profileElement,
  type Avatar,
} from "../../stanzas/linked.js";
import { parseXml } from "../../stanzas/xml.js";

const el = (s: string) => parseXml(s);
const refused = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    expect((e as StanzaError).condition).to.equal("bad-request");
    return (e as StanzaError).message;
  }
  throw new Error("expected a bad-request");
};
const AV: Avatar = { id: "0a1b", type: "image/png", bytes: 70, width: 1, height: 1, data: "iVBO" };

describe("stanzas/linked (urn:cardlink:linked:0; XEP-0172, XEP-0084, XEP-0356)", () => {
  it("builds the XEP-0356 privileged PEP publishes byte for byte", () => {
    expect(
      privilegedIq("cards.example.org", "bob@example.org", "lk-1", nickPublish("Bob")).toString(),
    ).to.equal(
      '<iq type="set" from="cards.example.org" to="bob@example.org" id="lk-1">' +
        '<privileged_iq xmlns="urn:xmpp:privilege:2"><iq xmlns="jabber:client" type="set" id="lk-1-w">' +
        '<pubsub xmlns="http://jabber.org/protocol/pubsub"><publish node="http://jabber.org/protocol/nick">' +
        '<item id="current"><nick xmlns="http://jabber.org/protocol/nick">Bob</nick></item></publish></pubsub>' +
        "</iq></privileged_iq></iq>",
    );
    expect(avatarDataPublish(AV).toString()).to.equal(
      '<pubsub xmlns="http://jabber.org/protocol/pubsub"><publish node="urn:xmpp:avatar:data">' +
        '<item id="0a1b"><data xmlns="urn:xmpp:avatar:data">iVBO</data></item></publish></pubsub>',
    );
    expect(avatarMetadataPublish(AV).toString()).to.equal(
      '<pubsub xmlns="http://jabber.org/protocol/pubsub"><publish node="urn:xmpp:avatar:metadata">' +
        '<item id="0a1b"><metadata xmlns="urn:xmpp:avatar:metadata">' +
        '<info bytes="70" id="0a1b" type="image/png" width="1" height="1"/></metadata></item></publish></pubsub>',
    );
  });

  it("reads mod_privilege's answers: the forwarded result, the forwarded error, nothing", () => {
    const wrap = (inner: string) =>
      el(
        `<iq type='result' from='bob@example.org' id='lk-1'><privilege xmlns='urn:xmpp:privilege:2'>` +
          `<forwarded xmlns='urn:xmpp:forward:0'>${inner}</forwarded></privilege></iq>`,
      );
    expect(privilegedOutcome(wrap("<iq xmlns='jabber:client' type='result' id='lk-1-w'/>"))).to.deep.equal({
      type: "result",
    });
    expect(
      privilegedOutcome(
        wrap(
          "<iq xmlns='jabber:client' type='error' id='lk-1-w'><error type='cancel'>" +
            "<not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
        ),
      ),
    ).to.deep.equal({ type: "error", condition: "not-allowed" });
    expect(privilegedOutcome(el("<iq type='result' id='x'/>"))).to.equal(undefined);
  });

  it("renders the linked-profile update", () => {
    expect(
      profileElement({ jid: "ann@example.org" }, { nickname: "Ann", avatar: AV, status: "away" }).toString(),
    ).to.equal(
      '<profile xmlns="urn:cardlink:linked:0" from-jid="ann@example.org"><nickname>Ann</nickname>' +
        '<avatar id="0a1b" type="image/png" bytes="70" width="1" height="1">iVBO</avatar>' +
        "<status>away</status></profile>",
    );
    expect(profileElement({ service: "chat", account: "ann" }, { status: "" }).toString()).to.equal(
      '<profile xmlns="urn:cardlink:linked:0" from-service="chat" from-account="ann"><status/></profile>',
    );
  });

  it("parses settings, account references and profile changes; refuses the rest with a text naming it", () => {
    expect(parseSettings("status nickname status")).to.deep.equal(["nickname", "status"]);
    expect(refused(() => parseSettings(""))).to.match(/at least one/);
    expect(refused(() => parseSettings("nickname mood"))).to.match(/'mood' is not a setting/);
    expect(parseAccountRef(el("<x jid='a@b'/>"))).to.deep.equal({ jid: "a@b" });
    expect(parseAccountRef(el("<x service='chat' account='ann'/>"))).to.deep.equal({
      service: "chat",
      account: "ann",
    });
    expect(refused(() => parseAccountRef(el("<x jid='a@b' service='chat' account='ann'/>")))).to.match(
      /jid=/,
    );
    expect(refused(() => parseAccountRef(el("<x service='chat'/>")))).to.match(/jid=/);
    expect(
      parseProfileChange(
        el(
          "<profile-changed xmlns='urn:cardlink:linked:0' jid='a@b'><nickname>Ann</nickname>" +
            "<avatar type='image/png'>iVB\n O</avatar><status/></profile-changed>",
        ),
      ),
    ).to.deep.equal({ nickname: "Ann", avatar: { type: "image/png", data: "iVBO" }, status: "" });
    expect(refused(() => parseProfileChange(el("<profile-changed jid='a@b'/>")))).to.match(/nothing changed/);
    expect(
      refused(() => parseProfileChange(el("<p><nickname>a</nickname><nickname>b</nickname></p>"))),
    ).to.match(/given twice/);
    expect(refused(() => parseProfileChange(el("<p><mood>x</mood></p>")))).to.match(/unknown child <mood\/>/);
    expect(refused(() => parseProfileChange(el("<p><avatar>x</avatar></p>")))).to.match(/type=/);
  });
});

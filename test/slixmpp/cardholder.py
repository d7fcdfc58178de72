#!/usr/bin/python3
"""An independent client (slixmpp) as a card holder: sends directed presence to cardlink, redeems an exchange
code, answers every <updates xmlns='urn:cardlink:0'/> IQ with a result (the ack), and records what arrived.
It stops after `expect` card updates (or 30 s) and prints one JSON object.
usage: cardholder.py JID PASSWORD PORT COMPONENT CODE EXPECT_CARDS"""
import asyncio
import json
import sys

import slixmpp
from slixmpp.xmlstream import ET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

NS = "urn:cardlink:0"
VCARD = "urn:ietf:params:xml:ns:vcard-4.0"


class Holder(slixmpp.ClientXMPP):
    def __init__(self, jid, password, component, code, expect):
        super().__init__(jid, password)
        self.component = component
        self.code = code
        self.expect = expect
        self.result = {"updates": [], "cards": []}
        self.register_handler(
            Callback("cardlink updates", MatchXPath("{jabber:client}iq/{%s}updates" % NS), self.on_updates)
        )
        self.add_event_handler("session_start", self.start)

    async def start(self, _event):
        try:
            self.send_presence(pto=self.component)
            iq = self.make_iq_set(ito=self.component)
            redeem = ET.Element("{%s}redeem" % NS, {"code": self.code})
            iq.append(redeem)
            reply = await iq.send(timeout=10)
            binding = reply.xml.find("{%s}binding" % NS)
            self.result["redeemed_peer"] = binding.get("peer") if binding is not None else None
        except Exception as e:  # report, never hang
            self.result["error"] = repr(e)
            self.disconnect()

    def on_updates(self, iq):
        if iq["type"] != "set":
            return
        for u in iq.xml.find("{%s}updates" % NS):
            self.result["updates"].append({"id": u.get("id"), "kind": u.get("kind")})
            card = u.find("{%s}card" % NS)
            if card is not None:
                fn = card.find("{%s}vcard/{%s}fn/{%s}text" % (VCARD, VCARD, VCARD))
                self.result["cards"].append({"owner": card.get("owner"), "fn": fn.text if fn is not None else None})
        iq.reply().send()  # the ack
        if len(self.result["cards"]) >= self.expect:
            asyncio.get_event_loop().call_later(0.3, self.disconnect)


def main():
    jid, password, port, component, code, expect = sys.argv[1:7]
    xmpp = Holder(jid, password, component, code, int(expect))
    xmpp["feature_mechanisms"].unencrypted_plain = True
    xmpp.enable_starttls = False
    xmpp.enable_direct_tls = False
    xmpp.connect(address=("127.0.0.1", int(port)), force_starttls=False, disable_starttls=True)
    loop = asyncio.get_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(xmpp.disconnected, 30))
    except asyncio.TimeoutError:
        xmpp.result["error"] = "timeout"
    print(json.dumps(xmpp.result))


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""An independent client (slixmpp) holding a card whose owner moves (PROTOCOL §23.5): sends directed presence to
cardlink, redeems an exchange code, acknowledges every <updates xmlns='urn:cardlink:0'/> IQ, and stops once it has
seen the XEP-0283 <moved xmlns='urn:xmpp:moved:1'/> notice and a card update owned by the new JID (or after 60 s).
Prints one JSON object: the moved notice's old/new JIDs and the owners of the cards it received.
usage: moveholder.py JID PASSWORD PORT COMPONENT CODE NEW_JID"""
import asyncio
import json
import sys

import slixmpp
from slixmpp.xmlstream import ET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

NS = "urn:cardlink:0"
MOVED = "urn:xmpp:moved:1"


class Holder(slixmpp.ClientXMPP):
    def __init__(self, jid, password, component, code, new_jid):
        super().__init__(jid, password)
        self.component = component
        self.code = code
        self.new_jid = new_jid
        self.result = {"owners": [], "kinds": []}
        self.register_handler(
            Callback("cardlink updates", MatchXPath("{jabber:client}iq/{%s}updates" % NS), self.on_updates)
        )
        self.add_event_handler("session_start", self.start)

    async def start(self, _event):
        try:
            self.send_presence(pto=self.component)
            iq = self.make_iq_set(ito=self.component)
            iq.append(ET.Element("{%s}redeem" % NS, {"code": self.code}))
            await iq.send(timeout=10)
        except Exception as e:  # report, never hang
            self.result["error"] = repr(e)
            self.disconnect()

    def on_updates(self, iq):
        if iq["type"] != "set":
            return
        for u in iq.xml.find("{%s}updates" % NS):
            self.result["kinds"].append(u.get("kind"))
            moved = u.find("{%s}moved" % MOVED)
            if moved is not None:
                self.result["moved"] = {
                    "old": moved.findtext("{%s}old-jid" % MOVED),
                    "new": moved.findtext("{%s}new-jid" % MOVED),
                }
            card = u.find("{%s}card" % NS)
            if card is not None:
                self.result["owners"].append(card.get("owner"))
        iq.reply().send()  # the ack
        if "moved" in self.result and self.new_jid in self.result["owners"]:
            asyncio.get_event_loop().call_later(0.3, self.disconnect)


def main():
    jid, password, port, component, code, new_jid = sys.argv[1:7]
    xmpp = Holder(jid, password, component, code, new_jid)
    xmpp["feature_mechanisms"].unencrypted_plain = True
    xmpp.enable_starttls = False
    xmpp.enable_direct_tls = False
    xmpp.connect(address=("127.0.0.1", int(port)), force_starttls=False, disable_starttls=True)
    loop = asyncio.get_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(xmpp.disconnected, 60))
    except asyncio.TimeoutError:
        xmpp.result["error"] = "timeout"
    print(json.dumps(xmpp.result))


if __name__ == "__main__":
    main()

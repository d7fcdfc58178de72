#!/usr/bin/python3
"""An independent client (slixmpp) in contact groups (PROTOCOL.md §21): sends directed presence to cardlink,
creates a group and invites PEER to it, accepts the first group invitation waiting for it, acknowledges every
<updates/> IQ, waits until PEER has joined its group (a group-member notice) and it holds PEER's card, then leaves
the group it accepted. Prints one JSON object (what it did and what arrived); gives up after 40 s.
usage: groupmember.py JID PASSWORD PORT COMPONENT PEER"""
import asyncio
import json
import sys

import slixmpp
from slixmpp.xmlstream import ET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

NS = "urn:cardlink:0"
VCARD = "urn:ietf:params:xml:ns:vcard-4.0"


class Member(slixmpp.ClientXMPP):
    def __init__(self, jid, password, component, peer):
        super().__init__(jid, password)
        self.component = component
        self.peer = peer
        self.result = {"updates": [], "cards": [], "members": []}
        self.ready = asyncio.Event()
        self.register_handler(
            Callback("cardlink updates", MatchXPath("{jabber:client}iq/{%s}updates" % NS), self.on_updates)
        )
        self.add_event_handler("session_start", self.start)

    async def request(self, name, attrs, kind="set"):
        iq = self.make_iq_set(ito=self.component) if kind == "set" else self.make_iq_get(ito=self.component)
        iq.append(ET.Element("{%s}%s" % (NS, name), attrs))
        return await iq.send(timeout=10)

    async def start(self, _event):
        try:
            self.send_presence(pto=self.component)
            created = (await self.request("group-create", {"name": "Slix group", "invite": "members"})).xml
            group = created.find("{%s}group" % NS)
            self.result["created"] = {"id": group.get("id"), "role": group.get("role")}
            invited = (await self.request("group-invite", {"group": group.get("id"), "jid": self.peer})).xml
            self.result["invited"] = invited.find("{%s}group-invitation" % NS).get("jid")
            pending = (await self.request("group-invitations", {}, "get")).xml
            inv = pending.find("{%s}group-invitations/{%s}group-invitation" % (NS, NS))
            accepted = (await self.request("group-accept", {"id": inv.get("id")})).xml
            joined = accepted.find("{%s}group" % NS)
            self.result["accepted"] = {"id": joined.get("id"), "name": joined.get("name"), "members": joined.get("members")}
            await asyncio.wait_for(self.ready.wait(), 30)
            await self.request("group-leave", {"group": joined.get("id")})
            self.result["left"] = joined.get("id")
        except Exception as e:  # report, never hang
            self.result["error"] = repr(e)
        asyncio.get_event_loop().call_later(0.3, self.disconnect)

    def on_updates(self, iq):
        if iq["type"] != "set":
            return
        for u in iq.xml.find("{%s}updates" % NS):
            self.result["updates"].append({"id": u.get("id"), "kind": u.get("kind")})
            card = u.find("{%s}card" % NS)
            if card is not None:
                fn = card.find("{%s}vcard/{%s}fn/{%s}text" % (VCARD, VCARD, VCARD))
                self.result["cards"].append({"owner": card.get("owner"), "fn": fn.text if fn is not None else None})
            member = u.find("{%s}group-member" % NS)
            if member is not None:
                self.result["members"].append({"jid": member.get("jid"), "status": member.get("status")})
        iq.reply().send()  # the ack
        joined = any(m["jid"] == self.peer and m["status"] == "joined" for m in self.result["members"])
        if joined and any(c["owner"] == self.peer for c in self.result["cards"]):
            self.ready.set()


def main():
    jid, password, port, component, peer = sys.argv[1:6]
    xmpp = Member(jid, password, component, peer)
    xmpp["feature_mechanisms"].unencrypted_plain = True
    xmpp.enable_starttls = False
    xmpp.enable_direct_tls = False
    xmpp.connect(address=("127.0.0.1", int(port)), force_starttls=False, disable_starttls=True)
    loop = asyncio.get_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(xmpp.disconnected, 40))
    except asyncio.TimeoutError:
        xmpp.result["error"] = "timeout"
    print(json.dumps(xmpp.result))


if __name__ == "__main__":
    main()

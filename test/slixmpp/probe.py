#!/usr/bin/python3
"""An independent client (slixmpp, Debian python3-slixmpp) asks cardlink for disco#info, version and ping,
and sends one request that must fail. Prints one JSON object; the mocha test asserts on it.
usage: probe.py JID PASSWORD PORT COMPONENT_DOMAIN"""
import asyncio
import json
import sys

import slixmpp
from slixmpp.exceptions import IqError


class Probe(slixmpp.ClientXMPP):
    def __init__(self, jid, password, component):
        super().__init__(jid, password)
        self.component = component
        self.result = {}
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0092")
        self.register_plugin("xep_0199")
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("failed_auth", lambda *_: self.fail("auth failed"))

    def fail(self, why):
        self.result["error"] = why
        self.disconnect()

    async def start(self, _event):
        try:
            info = await self["xep_0030"].get_info(jid=self.component, timeout=10)
            q = info["disco_info"]
            self.result["identities"] = [f"{c}/{t}" for (c, t, _l, _n) in q["identities"]]
            self.result["features"] = sorted(q["features"])
            ver = await self["xep_0092"].get_version(self.component, timeout=10)
            self.result["version"] = ver["software_version"]["name"]
            rtt = await self["xep_0199"].ping(self.component, timeout=10)
            self.result["ping"] = rtt is not None
            iq = self.make_iq_get(ito=self.component)
            iq.append(slixmpp.xmlstream.ET.Element("{urn:example:unknown}query"))
            try:
                await iq.send(timeout=10)
                self.result["unknown"] = "result"
            except IqError as e:
                self.result["unknown"] = e.iq["error"]["condition"]
                self.result["unknown_text"] = e.iq["error"]["text"]
        except Exception as e:  # report, never hang
            self.result["error"] = repr(e)
        self.disconnect()


def main():
    jid, password, port, component = sys.argv[1:5]
    xmpp = Probe(jid, password, component)
    # Loopback test server without TLS offers PLAIN only.
    xmpp["feature_mechanisms"].unencrypted_plain = True
    xmpp.enable_starttls = False
    xmpp.enable_direct_tls = False
    xmpp.connect(address=("127.0.0.1", int(port)), force_starttls=False, disable_starttls=True)
    loop = asyncio.get_event_loop()
    loop.run_until_complete(asyncio.wait_for(xmpp.disconnected, 30))
    print(json.dumps(xmpp.result))


if __name__ == "__main__":
    main()

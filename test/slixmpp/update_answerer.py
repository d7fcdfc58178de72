#!/usr/bin/python3
"""An independent client (slixmpp) answering an update request (PROTOCOL §20.14-§20.15): sends directed presence
to cardlink, acknowledges every <updates xmlns='urn:cardlink:0'/> IQ, and on the first `update-request` notice that
carries a form (FORM_TYPE urn:cardlink:0:update-request) submits it back in <answer/> with `fn` set to NEW_FN and
NEW_TEL added to the phone numbers, every other pre-filled field as it came. Prints one JSON object: the notice's
attributes, the form's fields (var, type, label, required, values), the answer's result, or an error.
usage: update_answerer.py JID PASSWORD PORT COMPONENT NEW_FN NEW_TEL"""
import asyncio
import json
import sys

import slixmpp
from slixmpp.xmlstream import ET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

NS = "urn:cardlink:0"
RQ = "urn:cardlink:book:request:0"
DATA = "jabber:x:data"


class Answerer(slixmpp.ClientXMPP):
    def __init__(self, jid, password, component, new_fn, new_tel):
        super().__init__(jid, password)
        self.component = component
        self.new_fn = new_fn
        self.new_tel = new_tel
        self.answered = False
        self.result = {"updates": []}
        self.register_handler(
            Callback("cardlink updates", MatchXPath("{jabber:client}iq/{%s}updates" % NS), self.on_updates)
        )
        self.add_event_handler("session_start", self.start)

    async def start(self, _event):
        self.send_presence(pto=self.component)

    def on_updates(self, iq):
        if iq["type"] != "set":
            return
        notice = None
        for u in iq.xml.find("{%s}updates" % NS):
            self.result["updates"].append({"id": u.get("id"), "kind": u.get("kind")})
            if u.get("kind") == "update-request":
                notice = u.find("{%s}update-request" % RQ)
        iq.reply().send()  # the ack
        if notice is not None and not self.answered:
            self.answered = True
            asyncio.ensure_future(self.answer(notice))

    async def answer(self, notice):
        try:
            self.result["notice"] = dict(notice.attrib)
            form = notice.find("{%s}x" % DATA)
            fields = []
            submit = ET.Element("{%s}x" % DATA, {"type": "submit"})
            for f in form.findall("{%s}field" % DATA):
                values = [v.text or "" for v in f.findall("{%s}value" % DATA)]
                fields.append(
                    {
                        "var": f.get("var"),
                        "type": f.get("type"),
                        "label": f.get("label"),
                        "required": f.find("{%s}required" % DATA) is not None,
                        "values": values,
                    }
                )
                if f.get("var") == "fn":
                    values = [self.new_fn]
                if f.get("var") == "tel":
                    values = values + [self.new_tel]
                out = ET.SubElement(submit, "{%s}field" % DATA, {"var": f.get("var")})
                for v in values:
                    ET.SubElement(out, "{%s}value" % DATA).text = v
            self.result["fields"] = fields
            iq = self.make_iq_set(ito=self.component)
            answer = ET.Element("{%s}answer" % RQ, {"id": notice.get("id")})
            answer.append(submit)
            iq.append(answer)
            reply = await iq.send(timeout=10)
            done = reply.xml.find("{%s}answer" % RQ)
            self.result["changed"] = done.get("changed") if done is not None else None
        except Exception as e:  # report, never hang
            self.result["error"] = repr(e)
        asyncio.get_event_loop().call_later(0.3, self.disconnect)


def main():
    jid, password, port, component, new_fn, new_tel = sys.argv[1:7]
    xmpp = Answerer(jid, password, component, new_fn, new_tel)
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

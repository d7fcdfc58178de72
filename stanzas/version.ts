/** XEP-0092 Software Version (https://xmpp.org/extensions/xep-0092.html, 1.1). */
import { NS } from "./ns.js";
import { xml, type Element } from "./xml.js";

export function versionResult(name: string, version: string, os?: string): Element {
  return xml(
    "query",
    { xmlns: NS.VERSION },
    xml("name", {}, name),
    xml("version", {}, version),
    os ? xml("os", {}, os) : null,
  );
}

/** XEP-0030 Service Discovery (https://xmpp.org/extensions/xep-0030.html, 2.5rc3). */
import { NS } from "./ns.js";
import { xml, type Element } from "./xml.js";

export interface Identity {
  category: string;
  type: string;
  name?: string;
}

export interface DiscoItem {
  jid: string;
  node?: string;
  name?: string;
}

export function discoInfoResult(
  identities: Identity[],
  features: string[],
  node?: string,
  forms: Element[] = [],
): Element {
  const uniqueFeatures = [...new Set(features)].sort();
  return xml(
    "query",
    { xmlns: NS.DISCO_INFO, node },
    ...identities.map((i) => xml("identity", { category: i.category, type: i.type, name: i.name })),
    ...uniqueFeatures.map((f) => xml("feature", { var: f })),
    ...forms,
  );
}

export function discoItemsResult(items: DiscoItem[], node?: string): Element {
  return xml(
    "query",
    { xmlns: NS.DISCO_ITEMS, node },
    ...items.map((i) => xml("item", { jid: i.jid, node: i.node, name: i.name })),
  );
}

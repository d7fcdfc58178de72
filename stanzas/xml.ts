/**
 * The one place cardlink gets its XML element factory from.
 *
 * Why not `import ltx from "ltx"` here: in ESM that resolves to ltx's ESM build, a different Element class from
 * the CommonJS one @xmpp/component-core parses and serializes with, and xmpp.js then drops payloads it does not
 * recognise. Building every outgoing element with the component's own `xml` keeps one class end to end.
 */
import { createRequire } from "node:module";
import type { Element } from "@xmpp/component";

const require = createRequire(import.meta.url);
// CommonJS on purpose (see above); typed by types/xmpp.d.ts.
const xmppComponent = require("@xmpp/component") as typeof import("@xmpp/component");
const ltxCjs = require("ltx") as typeof import("ltx");

export type { Element };
export const xml = xmppComponent.xml;

/** Parses one XML document into the same Element class the component uses (tests, stored XML). */
export function parseXml(s: string): Element {
  return ltxCjs.parse(s);
}

/** Direct child elements, ignoring text nodes. */
export function childElements(el: Element): Element[] {
  return el.children.filter((c): c is Element => typeof c !== "string");
}

/**
 * True when `el` nests deeper than `max` levels (`el` itself is level 1). Iterative on purpose: it runs on
 * untrusted input before anything recursive (ltx's toString, the parsers) can overflow the stack on it, and it
 * stops at the first element past `max`.
 */
export function nestedDeeperThan(el: Element, max: number): boolean {
  const stack: Array<[Element, number]> = [[el, 1]];
  while (stack.length > 0) {
    const [e, depth] = stack.pop() as [Element, number];
    if (depth > max) return true;
    for (const c of e.children) if (typeof c !== "string") stack.push([c, depth + 1]);
  }
  return false;
}

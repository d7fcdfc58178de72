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

type ElementClass = new (name: string, attrs?: Record<string, string | undefined>) => Element;
// The class `xml` builds (see the file comment: one class end to end), taken from an instance of it.
const XmlElement = xml("x").constructor as ElementClass;

/**
 * An element whose serialization was done once and is kept: `write` (what a parent's serialization calls for
 * each child element) and `toString` emit the kept string. It carries the source's name, attributes and
 * children, so reading it (getChild, getText, attrs) sees the same tree. Neither it nor its source may be
 * mutated afterwards (the kept string would no longer match): build it from an element nobody changes, e.g. a
 * cached rendering.
 */
class Prerendered extends XmlElement {
  readonly serialized: string;
  /** UTF-8 length of `serialized`, measured once. */
  readonly bytes: number;

  constructor(src: Element) {
    super(src.name, src.attrs);
    this.children = src.children;
    this.serialized = src.toString();
    this.bytes = Buffer.byteLength(this.serialized, "utf8");
  }

  write(writer: (s: string) => void): void {
    writer(this.serialized);
  }

  override toString(): string {
    return this.serialized;
  }
}

/** `el` serialized once (see Prerendered): serializing a parent that holds it copies the kept string. */
export function prerendered(el: Element): Element & { readonly serialized: string; readonly bytes: number } {
  return el instanceof Prerendered ? el : new Prerendered(el);
}

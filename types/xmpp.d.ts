// Hand-written declarations: @xmpp/component(-core) 0.13.x ship no types. Only what cardlink uses is declared.

declare module "@xmpp/component" {
  export interface Element {
    name: string;
    attrs: Record<string, string | undefined>;
    children: Array<Element | string>;
    parent: Element | null;
    is(name: string, xmlns?: string): boolean;
    getName(): string;
    getNS(): string | undefined;
    getAttr(name: string): string | undefined;
    getChild(name: string, xmlns?: string): Element | undefined;
    getChildren(name: string, xmlns?: string): Element[];
    getChildElements(): Element[];
    getText(): string;
    getChildText(name: string, xmlns?: string): string | null;
    append(...nodes: Array<Element | string>): Element;
    toString(): string;
  }
  type Child = Element | string | null | undefined | false | Child[];
  export function xml(
    name: string,
    attrs?: Record<string, string | number | undefined> | null,
    ...children: Child[]
  ): Element;
  export function jid(s: string): {
    local: string;
    domain: string;
    resource: string;
    bare(): { toString(): string };
    toString(): string;
  };
}

declare module "@xmpp/component-core" {
  import type { Element } from "@xmpp/component";
  import { EventEmitter } from "node:events";
  export class Component extends EventEmitter {
    constructor(options: { service: string; domain: string });
    status: string;
    socket: unknown;
    options: { service: string; domain: string };
    connect(service: string): Promise<void>;
    open(options: { domain: string; lang?: string; timeout?: number }): Promise<Element>;
    authenticate(id: string, password: string): Promise<void>;
    send(el: Element): Promise<void>;
    /** Writes already-serialized XML to the socket (what send() does after el.toString()). */
    write(s: string): Promise<void>;
    stop(): Promise<void>;
    disconnect(timeout?: number): Promise<void>;
    timeout: number;
  }
}

declare module "ltx" {
  import type { Element } from "@xmpp/component";
  export function parse(s: string): Element;
}

declare module "@xmpp/xml" {
  export type Element = import("@xmpp/component").Element;
  export function xml(
    name: string,
    attrs?: Record<string, string | number | undefined> | null,
    ...children: Array<Element | string | null | undefined | false>
  ): Element;
  export default xml;
}

declare module "@xmpp/client" {
  import type { Element } from "@xmpp/xml";
  import { EventEmitter } from "node:events";
  export interface Client extends EventEmitter {
    start(): Promise<{ toString(): string }>;
    stop(): Promise<void>;
    send(el: Element): Promise<void>;
    status: string;
    reconnect: { stop(): void };
    middleware: { use(fn: (ctx: { stanza: Element }, next: () => Promise<unknown>) => unknown): void };
    socket: { destroy(): void } | null;
  }
  export function client(options: {
    service: string;
    domain: string;
    username?: string;
    password?: string;
    credentials?: (
      authenticate: (creds: { username: string; password: string }, mechanism: string) => Promise<void>,
      mechanisms: string[],
    ) => Promise<void>;
    resource?: string;
  }): Client;
  export { xml } from "@xmpp/xml";
}

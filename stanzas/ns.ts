/** Every namespace cardlink speaks, grouped by spec. One module so disco, routing and docs agree. */
export const NS = {
  // RFC 6120
  STANZAS: "urn:ietf:params:xml:ns:xmpp-stanzas",
  COMPONENT: "jabber:component:accept",
  // XEP-0030
  DISCO_INFO: "http://jabber.org/protocol/disco#info",
  DISCO_ITEMS: "http://jabber.org/protocol/disco#items",
  // XEP-0092
  VERSION: "jabber:iq:version",
  // XEP-0199
  PING: "urn:xmpp:ping",
  // XEP-0050
  COMMANDS: "http://jabber.org/protocol/commands",
  // XEP-0004
  DATA: "jabber:x:data",
  // XEP-0059
  RSM: "http://jabber.org/protocol/rsm",
  // XEP-0054 / XEP-0292
  VCARD_TEMP: "vcard-temp",
  VCARD4: "urn:ietf:params:xml:ns:vcard-4.0",
  // XEP-0357
  PUSH: "urn:xmpp:push:0",
  PUSH_SUMMARY: "urn:xmpp:push:summary",
  PUBSUB: "http://jabber.org/protocol/pubsub",
  PUBSUB_PUBLISH_OPTIONS: "http://jabber.org/protocol/pubsub#publish-options",
  // XEP-0283 (Moved, 0.2.0)
  MOVED: "urn:xmpp:moved:1",
  // XEP-0172 / XEP-0084 (PEP nodes cardlink publishes to for linked accounts, PROTOCOL §22)
  NICK: "http://jabber.org/protocol/nick",
  AVATAR_DATA: "urn:xmpp:avatar:data",
  AVATAR_METADATA: "urn:xmpp:avatar:metadata",
  // XEP-0356 (privileged entity) and the XEP-0297 wrapper of its answers
  PRIVILEGE: "urn:xmpp:privilege:2",
  FORWARD: "urn:xmpp:forward:0",
  CLIENT: "jabber:client",
  // XEP-0359
  SID: "urn:xmpp:sid:0",
  // Prosody
  PROSODY_COMPONENT: "xmpp:prosody.im/protocol/component",
  // cardlink's own protocol (docs/PROTOCOL.md)
  CARDLINK: "urn:cardlink:0",
  /** The server-side address book (PROTOCOL §20). */
  BOOK: "urn:cardlink:book:0",
  /** Update requests on address-book entries (PROTOCOL §20.11). */
  BOOK_REQUEST: "urn:cardlink:book:request:0",
  /** Identifiers, their verification, moves and registered services (PROTOCOL §23). */
  IDENTITY: "urn:cardlink:identity:0",
  /** Linked accounts (PROTOCOL §22). */
  LINKED: "urn:cardlink:linked:0",
  /** A disco#info feature, not a namespace of its own: cardlink accepts `<active-device/>` (PROTOCOL §10.7). */
  DEVICE_DELIVERY: "urn:cardlink:0:device-delivery",
  /** A disco#info feature: `<active-device/>` takes `format` (the compact update form, PROTOCOL §10.8). */
  UPDATE_FORMAT: "urn:cardlink:0:update-format",
} as const;

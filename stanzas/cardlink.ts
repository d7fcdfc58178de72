/**
 * cardlink's own protocol, namespace urn:cardlink:0 (docs/PROTOCOL.md). Pure builders and parsers: every
 * parser validates and throws StanzaError(bad-request) with a text naming the problem.
 */
import { badRequest, quote } from "./errors.js";
import { NS } from "./ns.js";
import { FIELD_NAMES, type FieldName } from "./model/card.js";
import type { SharePolicy } from "./model/policy.js";
import { xml, type Element } from "./xml.js";

const NSC = NS.CARDLINK;
const DEVICE_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const PLATFORMS = ["ios", "android", "other"] as const;
export type WirePlatform = (typeof PLATFORMS)[number];

export function requireAttr(el: Element, name: string): string {
  const v = el.attrs[name];
  if (v === undefined || v === "") throw badRequest(`<${quote(el.name)}/> needs a '${name}' attribute`);
  return v;
}

export function parseDeviceId(v: string | undefined, what = "device"): string | undefined {
  if (v === undefined || v === "") return undefined;
  if (!DEVICE_ID.test(v)) throw badRequest(`${what} id must be 1–128 characters of A–Z a–z 0–9 . _ : -`);
  return v;
}

const KEY_B64 = /^[A-Za-z0-9+/]{43}=$/;
const KEY_B64URL = /^[A-Za-z0-9_-]{43}$/;

/**
 * A push payload key: exactly 32 bytes (AES-256), as standard base64 with padding (44 characters) or base64url
 * without padding (43, what WebCrypto and Android's Base64.URL_SAFE|NO_PADDING produce). Node's decoder is
 * lenient (it skips junk and stops early), so the text is checked strictly and must be the canonical encoding
 * of its bytes. Stored in standard base64.
 */
export function parsePushKey(v: string): string {
  const ok = KEY_B64.test(v) || KEY_B64URL.test(v);
  const bytes = ok ? Buffer.from(v, KEY_B64.test(v) ? "base64" : "base64url") : Buffer.alloc(0);
  const canonical = bytes.toString("base64");
  if (bytes.length !== 32 || (canonical !== v && bytes.toString("base64url") !== v)) {
    throw badRequest(
      "push key must be 32 bytes (AES-256): 44 characters of base64 with padding, or 43 of base64url",
    );
  }
  return canonical;
}

export interface DeviceRegistration {
  deviceId: string;
  platform: WirePlatform;
  name?: string;
  push?: { token: string; topic?: string; key?: string };
}

export function parseDevice(el: Element): DeviceRegistration {
  const deviceId = parseDeviceId(requireAttr(el, "id")) as string;
  const platform = el.attrs.platform ?? "other";
  if (!(PLATFORMS as readonly string[]).includes(platform)) {
    throw badRequest(`platform must be one of ${PLATFORMS.join(", ")}, not '${quote(platform)}'`);
  }
  const name = el.attrs.name;
  if (name !== undefined && name.length > 200) throw badRequest("device name is longer than 200 characters");
  const p = el.getChild("push");
  let push: DeviceRegistration["push"];
  if (p) {
    const token = requireAttr(p, "token");
    if (token.length > 4096 || !/^[\x21-\x7e]+$/.test(token))
      throw badRequest("push token must be 1–4096 printable ASCII characters");
    const topic = p.attrs.topic;
    if (topic !== undefined && !/^[A-Za-z0-9._:-]{1,255}$/.test(topic))
      throw badRequest("push topic is not a bundle/app id");
    const key = p.attrs.key === undefined ? undefined : parsePushKey(p.attrs.key);
    push = { token, ...(topic ? { topic } : {}), ...(key ? { key } : {}) };
  }
  return {
    deviceId,
    platform: platform as WirePlatform,
    ...(name ? { name } : {}),
    ...(push ? { push } : {}),
  };
}

export function deviceElement(d: {
  deviceId: string;
  platform: string;
  name?: string;
  tokenState: string;
}): Element {
  return xml("device", {
    xmlns: NSC,
    id: d.deviceId,
    platform: d.platform,
    name: d.name,
    "push-state": d.tokenState,
  });
}

/**
 * `<active-device id/>` (PROTOCOL §10.7): which registered device this resource is. The id follows the device
 * id rules of §4.1, with the same texts (`<active-device/> needs a 'id' attribute`, `device id must be …`).
 */
export function parseActiveDevice(el: Element): string {
  return parseDeviceId(requireAttr(el, "id")) as string;
}

/**
 * The forms a declared device may ask its `card` updates in (PROTOCOL §10.8): `vcard4` (the default, §10.1's
 * XML) or `vcf` (the compact form: the same card as one vCard text node, as §5.2's `format='vcf'`).
 */
export const UPDATE_FORMATS = ["vcard4", "vcf"] as const;
export type UpdateFormat = (typeof UPDATE_FORMATS)[number];

/** `<active-device id format?/>` read whole: the device id and the update form it asks for (absent: none). */
export interface ActiveDevice {
  deviceId: string;
  format?: UpdateFormat;
}

/**
 * `<active-device id format?/>` (PROTOCOL §10.7, §10.8). The id is checked first, with parseActiveDevice's texts,
 * then the optional `format`: one of UPDATE_FORMATS (an empty value is refused like any other unknown one).
 */
export function parseActiveDeviceDeclaration(el: Element): ActiveDevice {
  const deviceId = parseActiveDevice(el);
  const format = el.attrs.format;
  if (format === undefined) return { deviceId };
  if (!(UPDATE_FORMATS as readonly string[]).includes(format)) {
    throw badRequest(`format must be one of ${UPDATE_FORMATS.join(", ")}, not '${quote(format)}'`);
  }
  return { deviceId, format: format as UpdateFormat };
}

/** The declaration, as the IQ result echoes it (`format` only when the request named one). */
export function activeDeviceElement(deviceId: string, format?: UpdateFormat): Element {
  return xml("active-device", { xmlns: NSC, id: deviceId, format });
}

/** Why a device must resync (§10.1 `resync`): its cursor went dormant and what it missed was collected. */
export type ResyncReason = "idle";

/** The child of an `<update kind='resync'/>`: pull-sync from 0, re-list requests and contacts, then go on. */
export function resyncElement(reason: ResyncReason): Element {
  return xml("resync", { xmlns: NSC, reason });
}

export function parseSharePolicy(el: Element): SharePolicy | null {
  const fields = el.getChildren("field").map((f) => f.getText().trim());
  const types = el.getChildren("type").map((t) => t.getText().trim().toLowerCase());
  for (const f of fields) {
    if (!(FIELD_NAMES as readonly string[]).includes(f))
      throw badRequest(`unknown card field '${quote(f)}'; fields are ${FIELD_NAMES.join(", ")}`);
  }
  for (const t of types)
    if (!/^[a-z0-9-]{1,40}$/.test(t)) throw badRequest(`'${quote(t)}' is not a TYPE value`);
  if (fields.length === 0 && types.length === 0) return null;
  return { ...(fields.length ? { fields: fields as FieldName[] } : {}), ...(types.length ? { types } : {}) };
}

export function sharePolicyElement(policy: SharePolicy | null): Element {
  return xml(
    "share",
    { all: policy ? undefined : "true" },
    ...(policy?.fields ?? []).map((f) => xml("field", {}, f)),
    ...(policy?.types ?? []).map((t) => xml("type", {}, t)),
  );
}

export interface BindingView {
  id: string;
  peer: string;
  createdAt: number;
  via: string;
  devices: Array<{ jid: string; ids: string[] }>;
}

export function bindingElement(b: BindingView): Element {
  return xml(
    "binding",
    { xmlns: NSC, id: b.id, peer: b.peer, created: new Date(b.createdAt).toISOString(), via: b.via },
    ...b.devices.map((d) => xml("devices", { jid: d.jid }, ...d.ids.map((id) => xml("device", { id })))),
  );
}

/** One delivered item: `id` is stable across re-deliveries (clients drop duplicates by it). */
export function updateElement(u: { id: string; kind: string; seq: number }, content: Element): Element {
  return xml("update", { id: u.id, kind: u.kind, seq: String(u.seq) }, content);
}

export function updatesElement(updates: Element[]): Element {
  return xml("updates", { xmlns: NSC }, ...updates);
}

export function parseBool(v: string | undefined, name: string): boolean {
  if (v === "true" || v === "1") return true;
  if (v === "false" || v === "0") return false;
  throw badRequest(`'${name}' must be true or false`);
}

export function parseNonNegativeInt(
  v: string | undefined,
  name: string,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  if (v === undefined || v === "") return undefined;
  if (!/^\d{1,16}$/.test(v) || Number(v) > max)
    throw badRequest(`'${name}' must be a whole number from 0 to ${max}`);
  return Number(v);
}

/**
 * The devices feature module (docs/REDESIGN.md §1.2): routes device, devices, remove-device on the accounts
 * part's device rows (runtime/accounts/: devices are part of identity; the queue and push need them), and
 * active-device (S12, PROTOCOL §10.7): a resource says which registered device it is, and from then on that
 * device has its own delivery cursor. The declaration itself is the presence's (runtime/presence.ts: it owns
 * which resource serves which consumer, and applies the declaration in the resource's chain); the same element
 * as a child of directed presence is read there too. This module answers the IQ, with §10.7's errors, and
 * advertises the disco feature.
 */
import { StanzaError, badRequest, notFound, quote } from "../../../stanzas/errors.js";
import {
  activeDeviceElement,
  deviceElement,
  parseActiveDeviceDeclaration,
  parseDevice,
  parseDeviceId,
  requireAttr,
} from "../../../stanzas/cardlink.js";
import { NS } from "../../../stanzas/ns.js";
import { xml, type Element } from "../../../stanzas/xml.js";
import type { BareJid, DeviceInput } from "../../runtime/accounts/api.js";
import type { StanzaBudget } from "../../runtime/budget.js";
import type { FeatureModule, PresenceView, Runtime } from "../../runtime/context.js";
import type { Jid } from "../../runtime/jid.js";
import { pageList } from "../../runtime/paging.js";
import type { Reader, Uow } from "../../runtime/uow.js";

/** `set device`: register or update one of the user's devices, within limits.devicesPerUser. */
export async function registerDevice(
  rt: { uow: Uow },
  user: BareJid,
  el: Element,
  maxPerUser: number,
): Promise<Element> {
  const d = parseDevice(el);
  const input: DeviceInput = {
    deviceId: d.deviceId,
    platform: d.platform,
    ...(d.name ? { name: d.name } : {}),
    ...(d.push ? { pushToken: d.push.token } : {}),
    ...(d.push?.topic ? { pushTopic: d.push.topic } : {}),
    ...(d.push?.key ? { pushKey: d.push.key } : {}),
  };
  const saved = await rt.uow("device.set", async (u) => {
    const me = await u.accounts.ensure(user, { seen: true });
    return u.accounts.upsertDevice(me, input, maxPerUser);
  });
  if (saved === "over-limit") {
    throw new StanzaError("resource-constraint", `you already have ${maxPerUser} devices; remove one first`, {
      type: "cancel",
    });
  }
  return deviceElement(saved);
}

/** `get devices`: the user's devices, RSM-paged and cut by the stanza budget. Reads only. */
export async function listDevices(
  rt: { read: Reader; budget: StanzaBudget },
  user: BareJid,
  el: Element,
): Promise<Element> {
  const list = await rt.read("device.list", async (r) => {
    const me = await r.accounts.resolve(user);
    return me === undefined ? [] : r.accounts.devices(me);
  });
  const page = await pageList(el, list, (d) => d.deviceId, deviceElement, rt.budget);
  return xml("devices", { xmlns: NS.CARDLINK }, ...page.items, page.set);
}

/** `set remove-device`: item-not-found for a device the user does not have (nothing is created for it). */
export async function removeDevice(rt: { uow: Uow }, user: BareJid, el: Element): Promise<undefined> {
  const id = parseDeviceId(requireAttr(el, "id")) as string;
  const removed = await rt.uow("device.remove", async (u) => {
    const me = await u.accounts.resolve(user);
    return me !== undefined && (await u.accounts.removeDevice(me, id));
  });
  if (!removed) throw notFound(`you have no device '${quote(id)}'`);
  return undefined;
}

/**
 * `set active-device` (PROTOCOL §10.7): the sending resource is the user's device `id` until it goes
 * unavailable; the result echoes the element. The declaration is queued (presence.declare) before this
 * function's first await, so it is ordered right behind the request that recorded the resource.
 */
export async function activateDevice(
  presence: Pick<PresenceView, "declare">,
  from: Jid,
  el: Element,
): Promise<Element> {
  const { deviceId: id, format } = parseActiveDeviceDeclaration(el);
  // A declaration names one connection; a bare JID (a server acting for the account) is none.
  if (!from.resource) throw badRequest("<active-device/> must come from the resource it names");
  const r = await presence.declare(from.bare, from.full, id, format);
  if (r === "no-device") throw notFound(`you have no device '${quote(id)}'; register it first`);
  return activeDeviceElement(id, format);
}

export const devices: FeatureModule = {
  name: "devices",
  // Read by the service's disco#info (§3.1): a client checks it before declaring.
  discoFeatures: () => [NS.DEVICE_DELIVERY, NS.UPDATE_FORMAT],
  attach(rt: Runtime): void {
    const ns = NS.CARDLINK;
    rt.router.iq("set", ns, "device", (c) =>
      registerDevice(rt, c.user, c.payload, rt.config.limits.devicesPerUser),
    );
    rt.router.iq("get", ns, "devices", (c) => listDevices(rt, c.user, c.payload));
    rt.router.iq("set", ns, "remove-device", (c) => removeDevice(rt, c.user, c.payload));
    rt.router.iq("set", ns, "active-device", (c) => activateDevice(rt.presence, c.from, c.payload));
  },
};

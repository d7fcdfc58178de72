/**
 * The devices feature module (docs/REDESIGN.md §1.2): routes device, devices, remove-device on the accounts
 * part's device rows (runtime/accounts/: devices are part of identity; the queue and push need them).
 * `<active-device/>` comes with S12. Written beside component/cards.ts, which serves these routes until the
 * switch (issue 8 S11): not attached to the running app yet.
 */
import { StanzaError, notFound, quote } from "../../../stanzas/errors.js";
import { deviceElement, parseDevice, parseDeviceId, requireAttr } from "../../../stanzas/cardlink.js";
import { NS } from "../../../stanzas/ns.js";
import { xml, type Element } from "../../../stanzas/xml.js";
import type { BareJid, DeviceInput } from "../../runtime/accounts/api.js";
import type { StanzaBudget } from "../../runtime/budget.js";
import type { FeatureModule, Runtime } from "../../runtime/context.js";
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

export const devices: FeatureModule = {
  name: "devices",
  attach(rt: Runtime): void {
    const ns = NS.CARDLINK;
    rt.router.iq("set", ns, "device", (c) =>
      registerDevice(rt, c.user, c.payload, rt.config.limits.devicesPerUser),
    );
    rt.router.iq("get", ns, "devices", (c) => listDevices(rt, c.user, c.payload));
    rt.router.iq("set", ns, "remove-device", (c) => removeDevice(rt, c.user, c.payload));
  },
};

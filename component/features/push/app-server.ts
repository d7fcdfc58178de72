/**
 * cardlink as a XEP-0357 app server (the legacy component/push.ts, deleted at S11, on the unit of work): `<push-node/>` hands a
 * user's registered device a node and secret for their server's mod_cloud_notify, and the server's pubsub
 * publishes to that node become one push job of the device — queued in the publish's unit of work and answered
 * only after it committed (a result means the notice is durable). Only the message count travels (no sender, no
 * body): XEP-0357 §8 privacy.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import { parseDeviceId, requireAttr } from "../../../stanzas/cardlink.js";
import { firstValue, parseForm } from "../../../stanzas/dataforms.js";
import { StanzaError, badRequest, quote } from "../../../stanzas/errors.js";
import { NS } from "../../../stanzas/ns.js";
import { xml, type Element } from "../../../stanzas/xml.js";
import type { Metrics } from "../../runtime/metrics.js";
import type { Logger } from "../../runtime/log.js";
import type { Uow } from "../../runtime/uow.js";
import { noticeJob, pushable, PUSH_CHANNEL, type NoticeKind, type NoticeText, type Refs } from "./payload.js";
import { pushRepo } from "./repo.js";

export interface AppServerOptions {
  readonly uow: Uow;
  readonly domain: string;
  readonly policy: { readonly ios: NoticeKind | "none"; readonly android: NoticeKind | "none" };
  readonly messageText: NoticeText;
  readonly ttlSeconds: number;
  readonly hasProvider: (platform: "ios" | "android") => boolean;
  readonly refs: Refs;
  readonly metrics: Metrics;
  readonly log: Logger;
}

export class AppServer {
  constructor(private readonly o: AppServerOptions) {}

  /** `<push-node device='…'/>`: a node and secret for one of the user's push-capable devices. */
  registerNode(user: string, el: Element): Promise<Element> {
    const deviceId = parseDeviceId(requireAttr(el, "device")) as string;
    return this.o.uow("push.node", async (u) => {
      const account = await u.accounts.resolve(user);
      const d = account === undefined ? undefined : await u.accounts.device(account, deviceId);
      if (!d)
        throw new StanzaError("item-not-found", `you have no device '${quote(deviceId)}'; register it first`);
      if (d.platform !== "ios" && d.platform !== "android")
        throw new StanzaError(
          "not-acceptable",
          `device '${deviceId}' is '${d.platform}': push goes to ios or android devices`,
        );
      if (!this.o.hasProvider(d.platform))
        throw new StanzaError(
          "feature-not-implemented",
          `this server has no push provider for ${d.platform} configured`,
        );
      if (!pushable(d))
        throw new StanzaError("not-acceptable", `device '${deviceId}' has no usable push token`);
      const n = await pushRepo(u.tx).upsertNode(
        {
          node: randomBytes(16).toString("hex"),
          device: d.key,
          secret: randomBytes(24).toString("base64url"),
        },
        u.now,
      );
      return xml("push-node", { xmlns: NS.CARDLINK, jid: this.o.domain, node: n.node, secret: n.secret });
    });
  }

  /** XEP-0357 §5: the user's server publishes a notification to a node cardlink handed out. */
  async publish(domain: string, local: string, pubsub: Element): Promise<void> {
    if (local)
      throw new StanzaError(
        "forbidden",
        "push notifications are published by the user's server, not by users",
      );
    const publish = pubsub.getChild("publish");
    if (!publish)
      throw new StanzaError(
        "feature-not-implemented",
        "cardlink's pubsub service only accepts XEP-0357 publishes",
      );
    const nodeId = requireAttr(publish, "node");
    const options = pubsub.getChild("publish-options")?.getChild("x", NS.DATA);
    const secret = options ? firstValue(parseForm(options).values, "secret") : undefined;
    const notification = publish.getChild("item")?.getChild("notification", NS.PUSH);
    const summary = notification?.getChild("x", NS.DATA);
    const count = summary ? firstValue(parseForm(summary).values, "message-count") : undefined;
    let queued = false;
    try {
      await this.o.uow("push.publish", async (u) => {
        queued = false; // the store may run this again
        const repo = pushRepo(u.tx);
        const node = await repo.node(nodeId);
        const where = node ? await repo.nodeDevice(nodeId) : undefined;
        if (!node || !where) throw new StanzaError("item-not-found", `no push node '${quote(nodeId)}'`);
        if (!secret || !safeEqual(secret, node.secret))
          throw new StanzaError("forbidden", "wrong or missing secret in publish-options", { type: "auth" });
        const owner = await u.accounts.jidOf(where.account);
        const ownerDomain = owner.slice(owner.indexOf("@") + 1);
        if (ownerDomain !== domain)
          throw new StanzaError("forbidden", `node belongs to a user of ${ownerDomain}, not ${domain}`);
        const device = await u.accounts.device(where.account, where.deviceId);
        const platform = device ? pushable(device) : undefined;
        if (!device || !platform)
          throw new StanzaError(
            "item-not-found",
            "the device behind this node is gone or its token was revoked",
          );
        if (!notification)
          throw badRequest("publish must carry <item><notification xmlns='urn:xmpp:push:0'/></item>");
        const kind = this.o.policy[platform];
        if (kind === "none" || !this.o.hasProvider(platform)) return;
        const ref = await this.o.refs.ref(u.tx, `xep0357|${node.node}`);
        const spec = noticeJob(
          device,
          kind,
          ref,
          this.o.messageText,
          { type: "message", count: count ?? "1" },
          { ttlSeconds: this.o.ttlSeconds, now: u.now, extra: { type: "message" } },
        );
        if (!spec) return;
        await u.queue.job(PUSH_CHANNEL, spec);
        queued = true;
      });
    } catch (e) {
      if (e instanceof StanzaError) throw e;
      this.o.log.error({ event: "push-enqueue-failed", err: (e as Error).message }, "cannot queue push");
      throw new StanzaError("internal-server-error", "cannot queue the notification now; retry", {
        type: "wait",
      });
    }
    if (queued) this.o.metrics.inc("cardlink_push_app_server_total");
  }
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

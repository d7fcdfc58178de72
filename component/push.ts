/**
 * Push: wakes devices whose user is offline when something waits in their outbox (policy from config:
 * offline iOS → alert prompting to open the app, offline Android → FCM data wake-up while the update waits;
 * online → nothing), and serves as a XEP-0357 app server for Prosody's mod_cloud_notify. Payloads carry no
 * card content and no JID: an opaque reference and a generic text, optionally an AES-256-GCM encrypted blob
 * for clients that registered a key.
 */
import { detach } from "./runtime/log.js";
import { createCipheriv, createHmac, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import { StanzaError, badRequest, quote } from "../stanzas/errors.js";
import { parseDeviceId, requireAttr } from "../stanzas/cardlink.js";
import { firstValue, parseForm } from "../stanzas/dataforms.js";
import { NS } from "../stanzas/ns.js";
import { xml, type Element } from "../stanzas/xml.js";
import type { Device, PushJob } from "../storage/store.js";
import { PushDispatcher } from "./push-dispatcher.js";
import { createSenders, type Senders } from "../push/senders.js";
import type { AppContext, Feature } from "./runtime/context.js";

type NewJob = Omit<PushJob, "attempts" | "nextAt">;

/** AES-256-GCM, base64(iv ‖ ciphertext ‖ tag), for clients that registered a 32-byte key. */
export function encryptPayload(keyB64: string, plaintext: string): string {
  const iv = randomBytes(12);
  const c = createCipheriv("aes-256-gcm", Buffer.from(keyB64, "base64"), iv);
  const body = Buffer.concat([c.update(plaintext, "utf8"), c.final()]);
  return Buffer.concat([iv, body, c.getAuthTag()]).toString("base64");
}

export class Push implements Feature {
  readonly name = "push";
  private app!: AppContext;
  private senders: Senders = {};
  dispatcher!: PushDispatcher;

  attach(app: AppContext): void {
    this.app = app;
    const p = app.config.push;
    this.senders = createSenders(p);
    this.dispatcher = new PushDispatcher(app.store, this.senders, p, app.log, app.metrics);
    // Advertised (disco pubsub/push, urn:xmpp:push:0) only when a provider is configured to deliver to.
    app.pushAppServer = Object.keys(this.senders).length > 0;
    app.events.on("delivery.recipient-offline", (e) =>
      detach(app.log, "push-enqueue-failed", this.onOffline(e.recipient, e.kinds, e.subjects)),
    );
    app.router.iq("set", NS.CARDLINK, "push-node", (c) => this.registerNode(c.user, c.payload));
    app.router.iq("set", NS.PUBSUB, "pubsub", (c) => this.publish(c.from.domain, c.from.local, c.payload), {
      allowServer: true,
    });
    this.dispatcher.kick();
  }

  online(): void {
    this.dispatcher.kick();
  }

  async stop(): Promise<void> {
    await this.dispatcher.stop();
  }

  private jobFor(
    d: Device,
    kind: "alert" | "background",
    ref: string,
    text: { title: string; body: string; locKey: string },
    secret: Record<string, unknown>,
  ): NewJob | undefined {
    if (!d.pushToken || d.tokenState !== "ok" || (d.platform !== "ios" && d.platform !== "android")) {
      return undefined;
    }
    if (!this.senders[d.platform]) {
      this.app.metrics.inc("cardlink_push_total", { platform: d.platform, outcome: "no-provider" });
      return undefined;
    }
    const ttl = this.app.config.push.ttlSeconds;
    const data: Record<string, string> = { ref, v: "1" };
    if (d.pushKey) data.enc = encryptPayload(d.pushKey, JSON.stringify(secret));
    return {
      id: randomUUID(),
      owner: d.owner,
      deviceId: d.deviceId,
      platform: d.platform,
      token: d.pushToken,
      ...(d.pushTopic ? { topic: d.pushTopic } : {}),
      kind,
      collapseId: ref,
      ...(kind === "alert"
        ? { alert: { title: text.title, body: text.body, ...(text.locKey ? { locKey: text.locKey } : {}) } }
        : {}),
      data,
      // ttlSeconds 0: "now or never" at the provider (APNs apns-expiration 0, FCM ttl 0).
      expiresAt: ttl > 0 ? Math.floor(Date.now() / 1000) + ttl : 0,
    };
  }

  private refKey: Promise<Buffer> | undefined;

  /**
   * An opaque, stable reference: lets the app group notices (and is the collapse id) without telling Apple or
   * Google who or what. Keyed with a per-installation secret, so nobody can confirm a guessed pair of JIDs.
   */
  private async ref(s: string): Promise<string> {
    this.refKey ??= this.app.store.push.secret("push-ref-key").then((k) => Buffer.from(k, "base64"));
    return createHmac("sha256", await this.refKey)
      .update(s)
      .digest("base64url")
      .slice(0, 22);
  }

  private async onOffline(recipient: string, kinds: string[], subjects: string[]): Promise<void> {
    const policy = this.app.config.push.policy;
    const devices = await this.app.store.devices.list(recipient);
    // One pending notice per card per device; past a few, one notice for "several updates".
    const refs = await Promise.all(
      (subjects.length <= 3 ? subjects : ["*"]).map((s) => this.ref(`${recipient}|${s}`)),
    );
    const jobs: NewJob[] = [];
    for (const d of devices) {
      const kind = d.platform === "ios" ? policy.ios : d.platform === "android" ? policy.android : "none";
      if (kind === "none") continue;
      for (const ref of refs) {
        const j = this.jobFor(d, kind, ref, this.app.config.push.alertText, { kinds, subjects });
        if (j) jobs.push(j);
      }
    }
    if (jobs.length === 0) return;
    await this.app.store.push.enqueue(jobs);
    this.dispatcher.kick();
  }

  private async registerNode(user: string, el: Element): Promise<Element> {
    const deviceId = parseDeviceId(requireAttr(el, "device")) as string;
    const d = await this.app.store.devices.get(user, deviceId);
    if (!d)
      throw new StanzaError("item-not-found", `you have no device '${quote(deviceId)}'; register it first`);
    if (d.platform !== "ios" && d.platform !== "android") {
      throw new StanzaError(
        "not-acceptable",
        `device '${deviceId}' is '${d.platform}': push goes to ios or android devices`,
      );
    }
    if (!this.senders[d.platform]) {
      throw new StanzaError(
        "feature-not-implemented",
        `this server has no push provider for ${d.platform} configured`,
      );
    }
    if (!d.pushToken || d.tokenState !== "ok") {
      throw new StanzaError("not-acceptable", `device '${deviceId}' has no usable push token`);
    }
    const n = await this.app.store.push.createNode({
      node: randomBytes(16).toString("hex"),
      owner: user,
      deviceId,
      secret: randomBytes(24).toString("base64url"),
      createdAt: Date.now(),
    });
    return xml("push-node", {
      xmlns: NS.CARDLINK,
      jid: this.app.config.domain,
      node: n.node,
      secret: n.secret,
    });
  }

  /** XEP-0357 §5: the user's server publishes a notification to a node cardlink handed out. */
  private async publish(domain: string, local: string, pubsub: Element): Promise<void> {
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
    const node = await this.app.store.push.node(nodeId);
    if (!node) throw new StanzaError("item-not-found", `no push node '${quote(nodeId)}'`);
    const options = pubsub.getChild("publish-options")?.getChild("x", NS.DATA);
    const secret = options ? firstValue(parseForm(options).values, "secret") : undefined;
    if (!secret || !safeEqual(secret, node.secret)) {
      throw new StanzaError("forbidden", "wrong or missing secret in publish-options", { type: "auth" });
    }
    const owner = node.owner.slice(node.owner.indexOf("@") + 1);
    if (owner !== domain)
      throw new StanzaError("forbidden", `node belongs to a user of ${owner}, not ${domain}`);
    const device = await this.app.store.devices.get(node.owner, node.deviceId);
    if (!device || !device.pushToken || device.tokenState !== "ok") {
      throw new StanzaError("item-not-found", "the device behind this node is gone or its token was revoked");
    }
    const notification = publish.getChild("item")?.getChild("notification", NS.PUSH);
    if (!notification)
      throw badRequest("publish must carry <item><notification xmlns='urn:xmpp:push:0'/></item>");
    const summary = notification.getChild("x", NS.DATA);
    const count = summary ? firstValue(parseForm(summary).values, "message-count") : undefined;
    const policy = this.app.config.push.policy;
    const kind = device.platform === "ios" ? policy.ios : policy.android;
    if (kind === "none") return;
    // Only the count travels (no sender, no body): XEP-0357 §8 privacy, and the design rule for cardlink.
    const ref = await this.ref(`xep0357|${node.node}`);
    const job = this.jobFor(device, kind, ref, this.app.config.push.messageText, {
      type: "message",
      count: count ?? "1",
    });
    if (!job) return;
    job.data.type = "message";
    try {
      await this.app.store.push.enqueue([job]);
    } catch (e) {
      this.app.log.error({ event: "push-enqueue-failed", err: (e as Error).message }, "cannot queue push");
      throw new StanzaError("internal-server-error", "cannot queue the notification now; retry", {
        type: "wait",
      });
    }
    this.app.metrics.inc("cardlink_push_app_server_total");
    this.dispatcher.kick();
  }
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

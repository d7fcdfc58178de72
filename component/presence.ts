/**
 * Who is online, as far as cardlink can know: users send it directed presence, or grant it a presence
 * subscription (then cardlink is a contact like a transport, and Prosody tells it of every login). Available
 * resources are persisted so a restarted cardlink can try them at once; an error reply prunes a stale one.
 */
import { detach } from "./runtime/log.js";
import { xml, type Element } from "../stanzas/xml.js";
import type { AppContext, Feature } from "./runtime/context.js";
import type { Jid } from "./runtime/jid.js";

export class PresenceTracker implements Feature {
  readonly name = "presence";
  private readonly avail = new Map<string, Set<string>>();
  private app!: AppContext;

  attach(app: AppContext): void {
    this.app = app;
    app.router.onPresence((stanza, from) => this.onPresence(stanza, from));
    // A request from a full JID proves that resource is connected: updates can flow to clients that never
    // send presence to cardlink. If it disconnects unannounced, the next delivery's error prunes it.
    app.router.onRequest((from) => {
      if (!from.local || !from.resource) return;
      if (!this.touch(from.bare, from.full))
        detach(app.log, "presence-failed", this.available(from.bare, from.full));
    });
    app.metrics.gauge(
      "cardlink_users_available",
      () => this.avail.size,
      "users with at least one known available resource",
    );
  }

  resources(bare: string): string[] {
    return [...(this.avail.get(bare) ?? [])];
  }

  isAvailable(bare: string): boolean {
    return (this.avail.get(bare)?.size ?? 0) > 0;
  }

  /** Moves a known resource to the most recent end; false if it is not tracked. */
  private touch(bare: string, full: string): boolean {
    const set = this.avail.get(bare);
    if (!set?.delete(full)) return false;
    set.add(full);
    return true;
  }

  /**
   * Marks a full JID available (presence, or any request from it: proof it is connected). At most
   * limits.resourcesPerUser are tracked per user (Set order = least recently seen first): a newer one replaces
   * the oldest, so one user's deliveries never fan out to an unbounded number of IQs. `presence` is true for an
   * available presence stanza: from a resource already known it may be a client that reconnected under the same
   * resource (its old session, and any update in flight to it, gone), so it is announced again.
   */
  async available(bare: string, full: string, presence = false): Promise<void> {
    if (this.touch(bare, full)) {
      if (presence) this.app.events.emit("presence.available", { bare, full, again: true });
      return;
    }
    let set = this.avail.get(bare);
    if (!set) this.avail.set(bare, (set = new Set()));
    const cap = this.app.config.limits.resourcesPerUser;
    const evicted: string[] = [];
    for (const old of set) {
      if (set.size < cap) break;
      set.delete(old);
      evicted.push(old);
    }
    set.add(full);
    for (const old of evicted) await this.app.store.presence.remove(old);
    if (evicted.length) {
      this.app.metrics.inc("cardlink_presence_resources_evicted_total", undefined, evicted.length);
      this.app.log.debug(
        { event: "resource-evicted", bare, evicted },
        "least recently seen resource forgotten",
      );
    }
    await this.app.store.presence.add(bare, full);
    this.app.events.emit("presence.available", { bare, full });
  }

  async unavailable(bare: string, full: string): Promise<void> {
    const set = this.avail.get(bare);
    if (set?.delete(full) && set.size === 0) this.avail.delete(bare);
    await this.app.store.presence.remove(full);
    this.app.events.emit("presence.unavailable", { bare, full });
  }

  /** After (re)connecting: resources known before are tried; subscribers are probed (Prosody answers for them). */
  async restore(probeUsers: string[]): Promise<void> {
    const cap = this.app.config.limits.resourcesPerUser;
    for (const r of await this.app.store.presence.all()) {
      let set = this.avail.get(r.bare);
      if (!set) this.avail.set(r.bare, (set = new Set()));
      set.add(r.full);
      // Rows come oldest first; a lowered cap keeps the newest.
      for (const old of set) {
        if (set.size <= cap) break;
        set.delete(old);
        await this.app.store.presence.remove(old);
      }
    }
    for (const bare of probeUsers) {
      if (await this.app.store.presence.isSubscriber(bare)) {
        await this.send("probe", bare);
      }
    }
  }

  private async send(type: string | undefined, to: string): Promise<void> {
    await this.app.send(xml("presence", { type, to, from: this.app.config.domain }));
  }

  private async onPresence(stanza: Element, from: Jid): Promise<void> {
    const type = stanza.attrs.type;
    const store = this.app.store.presence;
    switch (type) {
      case undefined:
        if (from.resource && from.local) await this.available(from.bare, from.full, true);
        return;
      case "unavailable":
        if (from.resource) await this.unavailable(from.bare, from.full);
        else for (const full of this.resources(from.bare)) await this.unavailable(from.bare, full);
        return;
      case "subscribe":
        // cardlink accepts every subscription from a served user and asks for theirs in return, so it learns
        // when they log in without the client having to send directed presence.
        await store.addSubscriber(from.bare);
        await this.send("subscribed", from.bare);
        await this.send("subscribe", from.bare);
        await this.send(undefined, from.bare);
        return;
      case "subscribed":
        await store.addSubscriber(from.bare);
        return;
      case "unsubscribe":
      case "unsubscribed":
        await store.removeSubscriber(from.bare);
        if (type === "unsubscribe") await this.send("unsubscribed", from.bare);
        return;
      case "probe":
        await this.send(undefined, from.bare);
        return;
      default:
        return;
    }
  }
}

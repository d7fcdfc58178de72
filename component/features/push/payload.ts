/**
 * What a push notice carries (docs/REDESIGN.md §4.3, PROTOCOL.md §12.2), the same wire fields as today's
 * component/push.ts: an opaque reference (`ref`, also the collapse id), `v`, a generic localizable alert text for
 * alert notices, and optionally `enc` — AES-256-GCM of `{kinds, subjects}` (wire subjects) for a device that
 * registered a key. No card content and no JID travels in clear.
 *
 * Refs are keyed HMACs over internal ids (§2.8.3): `HMAC-SHA256(key, "a<recipient id>|<subject ref>")`, with
 * `<subject ref>` = `a<account id>` for account subjects, the entity id otherwise, `*` for "several". Opaque,
 * 22 characters, stable, and stable across a JID change; nobody without the installation key can confirm a guess.
 *
 * A notice is one job of channel `push` (§2.3.6): target = the device key, ckey = the ref (a second change about
 * the same subject replaces the pending notice), body = everything the provider needs (PushBody), so sending
 * reads nothing.
 */
import { createCipheriv, createHmac, randomBytes } from "node:crypto";
import type { Device } from "../../runtime/accounts/api.js";
import type { Json, JobSpec } from "../../runtime/queue/api.js";
import type { PendingEntry } from "../../runtime/queue/api.js";
import type { AccountId, Sql } from "../../../storage/store.js";
import { pushRepo } from "./repo.js";

export const PUSH_CHANNEL = "push";
/** The meta secret behind the refs (`secret:push-ref-key`, kept by the 2000 migration). */
export const REF_SECRET = "push-ref-key";

export type NoticeKind = "alert" | "background";
export interface NoticeText {
  title: string;
  body: string;
  locKey: string;
}

/** A push job's body: a PushNotice without its id (the job's uid is) — JSON, so every field is a plain value. */
export interface PushBody {
  [k: string]: Json | undefined;
  platform: "ios" | "android";
  token: string;
  topic?: string;
  kind: NoticeKind;
  collapseId: string;
  alert?: { title: string; body: string; locKey?: string };
  data: Record<string, string>;
  /** Provider expiry, epoch seconds; 0 = now or never (APNs apns-expiration 0, FCM ttl 0). */
  expiresAt: number;
  /** When the notice was queued (ms): the latency metric's start. */
  queuedAt: number;
}

/** AES-256-GCM, base64(iv ‖ ciphertext ‖ tag), for clients that registered a 32-byte key. */
export function encryptPayload(keyB64: string, plaintext: string): string {
  const iv = randomBytes(12);
  const c = createCipheriv("aes-256-gcm", Buffer.from(keyB64, "base64"), iv);
  const body = Buffer.concat([c.update(plaintext, "utf8"), c.final()]);
  return Buffer.concat([iv, body, c.getAuthTag()]).toString("base64");
}

/** The subject part of a ref's input: `a<id>` for account subjects, the entity id otherwise (§2.8.3). */
export function subjectRef(e: Pick<PendingEntry, "subject" | "subjectAccount">): string {
  return e.subjectAccount !== undefined ? `a${e.subjectAccount}` : e.subject;
}

/** The HMAC input of a ref about `subject` (a subjectRef or `*`) for the recipient account. */
export const refInput = (recipient: AccountId, subject: string): string => `a${recipient}|${subject}`;

/**
 * Opaque refs under one installation key, read (created on first use) in the caller's transaction: a ref is made
 * inside a unit of work (scan, publish), and a second one just for the key would wait on the writer it holds.
 */
export class Refs {
  private key: Promise<Buffer> | undefined;

  async ref(q: Sql, input: string): Promise<string> {
    this.key ??= pushRepo(q)
      .secret(REF_SECRET)
      .then((k) => Buffer.from(k, "base64"));
    // A failed load must not stick: the next call tries again.
    const key = await this.key.catch((e: unknown) => {
      this.key = undefined;
      throw e;
    });
    return createHmac("sha256", key).update(input).digest("base64url").slice(0, 22);
  }
}

/** The device's push platform when it can receive a notice now (ios/android with a usable token), else undefined. */
export function pushable(d: Device): "ios" | "android" | undefined {
  if (!d.pushToken || d.tokenState !== "ok") return undefined;
  return d.platform === "ios" || d.platform === "android" ? d.platform : undefined;
}

/**
 * One notice to one device as a job spec, or undefined when the device cannot be pushed to. `secret` is what
 * `enc` encrypts for a device with a key; `extra` adds data fields (XEP-0357 publishes: `type: message`).
 */
export function noticeJob(
  d: Device,
  kind: NoticeKind,
  ref: string,
  text: NoticeText,
  secret: Json,
  o: { ttlSeconds: number; now: number; extra?: Record<string, string> },
): JobSpec | undefined {
  const platform = pushable(d);
  if (!platform || !d.pushToken) return undefined;
  const data: Record<string, string> = { ref, v: "1", ...o.extra };
  if (d.pushKey) data.enc = encryptPayload(d.pushKey, JSON.stringify(secret));
  const body: PushBody = {
    platform,
    token: d.pushToken,
    ...(d.pushTopic ? { topic: d.pushTopic } : {}),
    kind,
    collapseId: ref,
    ...(kind === "alert"
      ? { alert: { title: text.title, body: text.body, ...(text.locKey ? { locKey: text.locKey } : {}) } }
      : {}),
    data,
    // ttlSeconds 0: "now or never" at the provider, and the job never expires here either (today's rule).
    expiresAt: o.ttlSeconds > 0 ? Math.floor(o.now / 1000) + o.ttlSeconds : 0,
    queuedAt: o.now,
  };
  return {
    kind,
    target: deviceTarget(d),
    body: body as Json,
    ckey: ref,
    account: d.account,
    device: d.key,
    ...(o.ttlSeconds > 0 ? { expiresAt: o.now + o.ttlSeconds * 1000 } : {}),
  };
}

/** A push job's target: the device key (§2.3.6), so coalescing is per device and ref. */
export const deviceTarget = (d: Pick<Device, "key">): string => `device:${d.key}`;

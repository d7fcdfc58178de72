/** Builds the provider senders a deployment configured (config.push.apns / config.push.fcm). */
import { ApnsSender, type ApnsConfig } from "./apns.js";
import { FcmSender, type FcmConfig } from "./fcm.js";
import type { Platform, PushSender } from "./types.js";

export type Senders = Partial<Record<Platform, PushSender>>;

export class PushConfigError extends Error {}

function need(o: Record<string, unknown>, key: string, where: string): void {
  if (o[key] === undefined || o[key] === "") throw new PushConfigError(`${where}.${key} is required`);
}

export function createSenders(cfg: {
  apns?: Record<string, unknown>;
  fcm?: Record<string, unknown>;
}): Senders {
  const senders: Senders = {};
  if (cfg.apns) {
    const a = cfg.apns;
    if (typeof a.production !== "boolean")
      throw new PushConfigError("push.apns.production must be true or false");
    if (!a.token && !a.cert)
      throw new PushConfigError("push.apns needs token {key, keyId, teamId} or cert + key");
    if (a.token)
      for (const k of ["key", "keyId", "teamId"])
        need(a.token as Record<string, unknown>, k, "push.apns.token");
    // Shape checked above; the remaining optional keys are read by ApnsSender with its own defaults.
    senders.ios = new ApnsSender(a as unknown as ApnsConfig);
  }
  if (cfg.fcm) {
    need(cfg.fcm, "serviceAccount", "push.fcm");
    senders.android = new FcmSender(cfg.fcm as unknown as FcmConfig);
  }
  return senders;
}

/** Builds the provider senders a deployment configured (config.push.apns / config.push.fcm). */
import { ApnsSender, type ApnsConfig } from "./apns.js";
import { FcmSender, type FcmConfig } from "./fcm.js";
import type { Platform, PushSender } from "./types.js";

export type Senders = Partial<Record<Platform, PushSender>>;

/**
 * A push provider setting is wrong: a configuration error like any other (exit status 2, no stack trace).
 * It extends Error, not the runtime's ConfigError, because push/ imports nothing of cardlink's
 * (docs/ARCHITECTURE.md); the `cardlink` command treats both as configuration errors (isConfigError in
 * component/runtime/ctl.ts).
 */
export class PushConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PushConfigError";
  }
}

/**
 * Runs a provider's constructor, which loads and checks its credentials (node-apn signs a first token,
 * firebase-admin parses the service account): its error becomes one line naming the setting at fault.
 */
function construct<T>(where: string, make: () => T): T {
  try {
    return make();
  } catch (e) {
    const msg = ((e as Error).message || String(e)).split("\n")[0] as string;
    throw new PushConfigError(`${where} is not usable: ${msg}`);
  }
}

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
    const where = a.token ? "push.apns.token.key" : "push.apns.cert/key";
    senders.ios = construct(where, () => new ApnsSender(a as unknown as ApnsConfig));
  }
  if (cfg.fcm) {
    need(cfg.fcm, "serviceAccount", "push.fcm");
    senders.android = construct(
      "push.fcm.serviceAccount",
      () => new FcmSender(cfg.fcm as unknown as FcmConfig),
    );
  }
  return senders;
}

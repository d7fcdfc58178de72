/**
 * The contract between cardlink's push dispatcher and the provider senders (APNs, FCM).
 * A sender knows one provider's wire protocol; it never retries, stores or decides policy: it classifies.
 */

export type Platform = "ios" | "android";

/** What the dispatcher asks a provider to deliver to one device token. */
export interface PushNotice {
  /** Stable id of this notice (the dispatcher's queue id); also sent as apns-id / FCM message data where allowed. */
  id: string;
  platform: Platform;
  token: string;
  /** APNs topic (bundle id) for iOS; ignored for FCM. */
  topic?: string;
  /**
   * alert: the user should see something (APNs push-type alert, priority 10; FCM notification, android.priority high).
   * background: a silent wake-up (APNs push-type background, priority 5, content-available; FCM data-only, normal priority).
   */
  kind: "alert" | "background";
  /** One pending notice per card per device: apns-collapse-id / FCM collapse_key. At most 64 bytes. */
  collapseId?: string;
  /** Absolute expiry, epoch seconds: apns-expiration / FCM ttl (computed from now). 0 = deliver now or never. */
  expiresAt: number;
  /** Generic, localizable text for alerts. Never card content or a JID unless the user opted into encryption. */
  alert?: { title?: string; body: string; locKey?: string; locArgs?: string[] };
  /** Opaque string data for the app (e.g. {ref: "<opaque reference>"}); small, no personal data by default. */
  data: Record<string, string>;
}

export type PushOutcome =
  | { status: "sent"; providerId?: string }
  /** Transient: 429, 5xx, timeouts, connection failures. retryAfterMs comes from Retry-After when the provider sent it. */
  | { status: "retry"; reason: string; retryAfterMs?: number }
  /** The token is dead (APNs 410 / Unregistered / BadDeviceToken, FCM registration-token-not-registered). */
  | { status: "invalid-token"; reason: string }
  /** Permanent for this notice (bad payload, bad topic, auth misconfiguration): do not retry it. */
  | { status: "failed"; reason: string };

export interface PushSender {
  readonly platform: Platform;
  /** Sends a batch; the result array is index-aligned with the input. Never throws for per-notice failures. */
  send(notices: PushNotice[]): Promise<PushOutcome[]>;
  /** Closes connections; pending sends settle. */
  close(): Promise<void>;
}

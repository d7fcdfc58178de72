/**
 * cardlink configuration: defaults ← JSON file ← environment. Read and checked once at start-up; the rest of
 * the code receives a frozen, fully-typed Config and never reads process.env itself. Reference: docs/CONFIG.md.
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import path from "node:path";
import type { DatabaseConfig } from "../../storage/index.js";
import { ITEM_RESERVE, LINK_LIMIT_MAX, LINK_LIMIT_MIN, StanzaBudget } from "./budget.js";

export interface Config {
  /** The component's domain, as declared in Prosody's `Component "cards.example.org"`. */
  domain: string;
  /** Shared secret, Prosody's `component_secret`. */
  secret: string;
  /** Where Prosody's component port listens (xmpp://host:port). Plaintext: keep it on loopback. */
  service: string;
  /** The Prosody VirtualHost(s) whose users cardlink serves. */
  servedHosts: string[];
  /** Stanzas from any other domain get `forbidden`. Defaults to servedHosts. */
  allowedDomains: string[];
  /** Bare JIDs allowed to run the admin ad-hoc commands. */
  admins: string[];
  dataDir: string;
  database: DatabaseConfig;
  log: { level: "trace" | "debug" | "info" | "warn" | "error" | "fatal" | "silent"; rawStream: boolean };
  reconnect: { initialDelayMs: number; maxDelayMs: number };
  /** How long cardlink waits for a reply to an IQ it sent. */
  iqTimeoutMs: number;
  /** Largest inbound stanza cardlink accepts (bytes of serialized XML); larger ones get policy-violation. */
  maxStanzaBytes: number;
  /**
   * The component link to Prosody. stanzaLimitBytes: the largest stanza the server accepts from cardlink —
   * Prosody's `component_stanza_size_limit` (default 512 KiB), ejabberd's `max_stanza_size` on the
   * ejabberd_service listener. Every stanza cardlink sends is built to fit (component/runtime/budget.ts).
   */
  link: { stanzaLimitBytes: number };
  /** How long shutdown waits for in-flight work before closing the database anyway. */
  shutdownGraceMs: number;
  /** Prometheus text metrics on <metricsAddress>:<port>/metrics (and /healthz); 0 = off. */
  metricsPort: number;
  /** Address the metrics listener binds: loopback unless the scraper is elsewhere. */
  metricsAddress: string;
  card: { maxBytes: number; maxPhotoBytes: number; maxItemsPerField: number; maxTextLength: number };
  exchange: { codeTtlSeconds: number; requestTtlSeconds: number; maxPendingPerUser: number };
  delivery: {
    /** How long an update IQ may stay unanswered before it counts as failed and is retried. */
    ackTimeoutMs: number;
    retryBaseMs: number;
    retryMaxMs: number;
    /** Most entries carried by one <updates/> IQ (one ack covers them all). */
    batchSize: number;
  };
  push: PushConfig;
  limits: LimitsConfig;
}

/**
 * Shares and caps that keep one user from degrading another (docs/CONFIG.md "limits", PROTOCOL.md "Quotas and
 * rate limits"). Every shared resource has a global cap and a per-user share below it; every stored per-user
 * collection has a cap.
 */
export interface LimitsConfig {
  /** Deepest XML nesting accepted in an inbound stanza (the stanza element is level 1). */
  maxDepth: number;
  /** Open XEP-0050 sessions, all users together, and per user (bare JID). */
  adhocSessions: number;
  adhocSessionsPerUser: number;
  /** IQs cardlink waits on, in total, and per recipient (bare JID). */
  pendingIqs: number;
  pendingIqsPerUser: number;
  /** Available resources tracked per user; past it the least recently seen one is forgotten. */
  resourcesPerUser: number;
  devicesPerUser: number;
  blocksPerUser: number;
  /** Unused, unexpired exchange codes per user. */
  codesPerUser: number;
  /** Failed redeem attempts per user, and per sending domain, in a sliding window. */
  redeemFailuresPerUser: number;
  redeemFailuresPerHost: number;
  redeemWindowSeconds: number;
  /** Keys each rate limiter remembers at most (its memory bound); the least recently used are pruned. */
  rateLimiterKeys: number;
}

export interface PushConfig {
  /** Offline iOS device → alert; offline Android → background (FCM data); online → none. */
  policy: { ios: "alert" | "background" | "none"; android: "alert" | "background" | "none" };
  /** Seconds a notice stays deliverable at the provider. */
  ttlSeconds: number;
  /** Most notices per device per hour (iOS throttles background pushes); further ones coalesce. */
  perDeviceHourlyBudget: number;
  concurrency: number;
  retryBaseMs: number;
  retryMaxMs: number;
  maxAttempts: number;
  /** Text of card-update alerts. locKey (optional) lets the app localize: APNs then sends loc-key, not body. */
  alertText: { title: string; body: string; locKey: string };
  /** Text of XEP-0357 message alerts (what mod_cloud_notify announces); never the message itself. */
  messageText: { title: string; body: string; locKey: string };
  apns?: Record<string, unknown>;
  fcm?: Record<string, unknown>;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/**
 * The default data directory: systemd's $STATE_DIRECTORY (StateDirectory=cardlink; the first entry when several
 * are listed), else /var/lib/cardlink. Never relative to the working directory: a service started from another
 * directory must not silently create a second, empty database.
 */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  const state = env.STATE_DIRECTORY?.split(":")[0];
  return state && path.isAbsolute(state) ? state : "/var/lib/cardlink";
}

export function defaultConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const dataDir = defaultDataDir(env);
  return {
    domain: "cards.localhost",
    secret: "",
    service: "xmpp://127.0.0.1:5347",
    servedHosts: ["localhost"],
    allowedDomains: [],
    admins: [],
    dataDir,
    database: { driver: "sqlite", path: "" },
    log: { level: "info", rawStream: false },
    reconnect: { initialDelayMs: 250, maxDelayMs: 30_000 },
    iqTimeoutMs: 15_000,
    maxStanzaBytes: 256 * 1024,
    link: { stanzaLimitBytes: 512 * 1024 },
    shutdownGraceMs: 5_000,
    metricsPort: 0,
    metricsAddress: "127.0.0.1",
    card: { maxBytes: 96 * 1024, maxPhotoBytes: 64 * 1024, maxItemsPerField: 20, maxTextLength: 1024 },
    exchange: { codeTtlSeconds: 300, requestTtlSeconds: 7 * 24 * 3600, maxPendingPerUser: 50 },
    delivery: { ackTimeoutMs: 15_000, retryBaseMs: 1_000, retryMaxMs: 5 * 60_000, batchSize: 20 },
    push: {
      policy: { ios: "alert", android: "background" },
      ttlSeconds: 24 * 3600,
      perDeviceHourlyBudget: 6,
      concurrency: 64,
      retryBaseMs: 1_000,
      retryMaxMs: 10 * 60_000,
      maxAttempts: 8,
      alertText: {
        title: "Contacts",
        body: "A contact card was updated. Open the app to see it.",
        locKey: "",
      },
      messageText: { title: "Messages", body: "You have a new message.", locKey: "" },
      // Provider settings (docs/CONFIG.md); absent = that provider is off. Checked by push/senders.ts.
      apns: undefined,
      fcm: undefined,
    },
    limits: {
      maxDepth: 32,
      adhocSessions: 10_000,
      adhocSessionsPerUser: 10,
      pendingIqs: 100_000,
      pendingIqsPerUser: 64,
      resourcesPerUser: 10,
      devicesPerUser: 20,
      blocksPerUser: 1000,
      codesPerUser: 10,
      redeemFailuresPerUser: 10,
      redeemFailuresPerHost: 200,
      redeemWindowSeconds: 600,
      rateLimiterKeys: 100_000,
    },
  };
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Deep-merges `src` into `dst`, refusing keys the defaults do not know (typos must not pass silently). */
function merge(
  dst: Record<string, unknown>,
  src: Record<string, unknown>,
  where: string,
  open = false,
): void {
  for (const [k, v] of Object.entries(src)) {
    const at = where ? `${where}.${k}` : k;
    const cur = dst[k];
    if (!(k in dst) && !open) throw new ConfigError(`unknown setting '${at}'`);
    if (isObject(cur) && isObject(v)) merge(cur, v, at, at === "push.apns" || at === "push.fcm");
    else if (
      cur !== undefined &&
      (v === null || typeof cur !== typeof v || Array.isArray(cur) !== Array.isArray(v))
    ) {
      throw new ConfigError(`setting '${at}' must be ${Array.isArray(cur) ? "an array" : `a ${typeof cur}`}`);
    } else if (Array.isArray(v) && v.some((x) => typeof x !== "string")) {
      throw new ConfigError(`setting '${at}' must be an array of strings`);
    } else dst[k] = v;
  }
}

const ENV: Array<[string, (c: Config, v: string) => void]> = [
  ["CARDLINK_DOMAIN", (c, v) => (c.domain = v)],
  ["CARDLINK_SECRET", (c, v) => (c.secret = v)],
  ["CARDLINK_SERVICE", (c, v) => (c.service = v)],
  ["CARDLINK_SERVED_HOSTS", (c, v) => (c.servedHosts = splitList(v))],
  ["CARDLINK_ALLOWED_DOMAINS", (c, v) => (c.allowedDomains = splitList(v))],
  ["CARDLINK_ADMINS", (c, v) => (c.admins = splitList(v))],
  ["CARDLINK_DATA_DIR", (c, v) => (c.dataDir = v)],
  ["CARDLINK_DB", (c, v) => (c.database.path = v)],
  ["CARDLINK_LOG_LEVEL", (c, v) => (c.log.level = v as Config["log"]["level"])],
  ["CARDLINK_LOG_RAW", (c, v) => (c.log.rawStream = v === "1" || v === "true")],
  ["CARDLINK_METRICS_PORT", (c, v) => (c.metricsPort = Number(v))],
  ["CARDLINK_METRICS_ADDRESS", (c, v) => (c.metricsAddress = v)],
  ["CARDLINK_STANZA_LIMIT", (c, v) => (c.link.stanzaLimitBytes = Number(v))],
];

function splitList(v: string): string[] {
  return v
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
}

export function loadConfig(
  opts: { file?: string; env?: NodeJS.ProcessEnv; overrides?: object } = {},
): Config {
  const env = opts.env ?? process.env;
  const c = defaultConfig(env) as unknown as Record<string, unknown>;
  const file = opts.file ?? env.CARDLINK_CONFIG;
  if (file) {
    let parsed: Json;
    try {
      parsed = JSON.parse(readFileSync(file, "utf8")) as Json;
    } catch (e) {
      throw new ConfigError(`cannot read config file ${file}: ${(e as Error).message}`);
    }
    if (!isObject(parsed)) throw new ConfigError(`config file ${file} must hold a JSON object`);
    merge(c, parsed, "");
  }
  if (opts.overrides) merge(c, opts.overrides as Record<string, unknown>, "");
  const cfg = c as unknown as Config;
  for (const [name, apply] of ENV) {
    const v = env[name];
    if (v !== undefined && v !== "") apply(cfg, v);
  }
  return finish(cfg);
}

function finish(c: Config): Config {
  if (c.allowedDomains.length === 0) c.allowedDomains = [...c.servedHosts];
  if (!c.database.path) c.database.path = path.join(c.dataDir, "cardlink.sqlite");
  check(c);
  return Object.freeze(c);
}

function check(c: Config): void {
  if (!/^[a-z0-9.-]+$/i.test(c.domain)) throw new ConfigError(`domain '${c.domain}' is not a domain name`);
  if (!c.secret)
    throw new ConfigError("secret is empty: set it to Prosody's component_secret (or CARDLINK_SECRET)");
  if (!/^xmpp:\/\/[^:/]+:\d+$/.test(c.service)) {
    throw new ConfigError(`service '${c.service}' must look like xmpp://127.0.0.1:5347`);
  }
  if (c.servedHosts.length === 0) throw new ConfigError("servedHosts must name at least one Prosody host");
  const levels = ["trace", "debug", "info", "warn", "error", "fatal", "silent"];
  if (!levels.includes(c.log.level)) throw new ConfigError(`log.level must be one of ${levels.join(", ")}`);
  const positive: Array<[string, number, number, number]> = [
    ["reconnect.initialDelayMs", c.reconnect.initialDelayMs, 10, 60_000],
    ["reconnect.maxDelayMs", c.reconnect.maxDelayMs, 100, 3_600_000],
    ["iqTimeoutMs", c.iqTimeoutMs, 100, 600_000],
    ["maxStanzaBytes", c.maxStanzaBytes, 1024, 16 * 1024 * 1024],
    ["link.stanzaLimitBytes", c.link.stanzaLimitBytes, LINK_LIMIT_MIN, LINK_LIMIT_MAX],
    ["shutdownGraceMs", c.shutdownGraceMs, 0, 600_000],
    ["metricsPort", c.metricsPort, 0, 65535],
    ["card.maxBytes", c.card.maxBytes, 512, 1024 * 1024],
    ["card.maxPhotoBytes", c.card.maxPhotoBytes, 0, 1024 * 1024],
    ["card.maxItemsPerField", c.card.maxItemsPerField, 1, 1000],
    ["card.maxTextLength", c.card.maxTextLength, 16, 65536],
    ["exchange.codeTtlSeconds", c.exchange.codeTtlSeconds, 10, 86_400],
    ["exchange.requestTtlSeconds", c.exchange.requestTtlSeconds, 60, 365 * 86_400],
    ["exchange.maxPendingPerUser", c.exchange.maxPendingPerUser, 1, 10_000],
    ["delivery.ackTimeoutMs", c.delivery.ackTimeoutMs, 100, 600_000],
    ["delivery.retryBaseMs", c.delivery.retryBaseMs, 10, 600_000],
    ["delivery.retryMaxMs", c.delivery.retryMaxMs, 100, 86_400_000],
    ["delivery.batchSize", c.delivery.batchSize, 1, 200],
    ["push.ttlSeconds", c.push.ttlSeconds, 0, 30 * 86_400],
    ["push.perDeviceHourlyBudget", c.push.perDeviceHourlyBudget, 1, 10_000],
    ["push.concurrency", c.push.concurrency, 1, 10_000],
    ["push.maxAttempts", c.push.maxAttempts, 1, 100],
    ["limits.maxDepth", c.limits.maxDepth, 8, 256],
    ["limits.adhocSessions", c.limits.adhocSessions, 1, 1_000_000],
    ["limits.adhocSessionsPerUser", c.limits.adhocSessionsPerUser, 1, 1000],
    ["limits.pendingIqs", c.limits.pendingIqs, 1, 10_000_000],
    ["limits.pendingIqsPerUser", c.limits.pendingIqsPerUser, 1, 100_000],
    ["limits.resourcesPerUser", c.limits.resourcesPerUser, 1, 1000],
    ["limits.devicesPerUser", c.limits.devicesPerUser, 1, 1000],
    ["limits.blocksPerUser", c.limits.blocksPerUser, 1, 100_000],
    ["limits.codesPerUser", c.limits.codesPerUser, 1, 1000],
    ["limits.redeemFailuresPerUser", c.limits.redeemFailuresPerUser, 1, 10_000],
    ["limits.redeemFailuresPerHost", c.limits.redeemFailuresPerHost, 2, 1_000_000],
    ["limits.redeemWindowSeconds", c.limits.redeemWindowSeconds, 10, 86_400],
    ["limits.rateLimiterKeys", c.limits.rateLimiterKeys, 100, 10_000_000],
  ];
  for (const [name, v, min, max] of positive) {
    if (!Number.isFinite(v) || v < min || v > max)
      throw new ConfigError(`${name} must be between ${min} and ${max}`);
  }
  for (const [name, v] of Object.entries(c.push.policy)) {
    if (!["alert", "background", "none"].includes(v)) {
      throw new ConfigError(`push.policy.${name} must be alert, background or none, not '${v}'`);
    }
  }
  for (const t of ["alertText", "messageText"] as const) {
    if (!c.push[t].body.trim()) throw new ConfigError(`push.${t}.body must not be empty`);
  }
  if (c.push.retryBaseMs < 10 || c.push.retryMaxMs < c.push.retryBaseMs || c.push.retryMaxMs > 86_400_000) {
    throw new ConfigError("push.retryBaseMs must be ≥ 10 and ≤ push.retryMaxMs ≤ 86400000");
  }
  if (c.reconnect.maxDelayMs < c.reconnect.initialDelayMs) {
    throw new ConfigError("reconnect.maxDelayMs must be ≥ reconnect.initialDelayMs");
  }
  const l = c.limits;
  const below: Array<[string, number, string, number]> = [
    ["limits.adhocSessionsPerUser", l.adhocSessionsPerUser, "limits.adhocSessions", l.adhocSessions],
    ["limits.pendingIqsPerUser", l.pendingIqsPerUser, "limits.pendingIqs", l.pendingIqs],
    // One delivery sends an IQ to every resource of the recipient at once: they must fit in its share.
    ["limits.resourcesPerUser", l.resourcesPerUser, "limits.pendingIqsPerUser", l.pendingIqsPerUser],
  ];
  for (const [a, x, b, y] of below) if (x > y) throw new ConfigError(`${a} must be ≤ ${b}`);
  // A share equal to the whole would let one user exhaust the host's budget alone.
  if (l.redeemFailuresPerHost <= l.redeemFailuresPerUser)
    throw new ConfigError("limits.redeemFailuresPerHost must be above limits.redeemFailuresPerUser");
  if (isIP(c.metricsAddress) === 0 && c.metricsAddress !== "localhost") {
    throw new ConfigError(
      `metricsAddress '${c.metricsAddress}' must be an IP address (e.g. 127.0.0.1 or ::1)`,
    );
  }
  if (c.card.maxPhotoBytes >= c.card.maxBytes)
    throw new ConfigError("card.maxPhotoBytes must be below card.maxBytes");
  if (!Number.isInteger(c.link.stanzaLimitBytes))
    throw new ConfigError("link.stanzaLimitBytes must be a whole number");
  // By construction, not by luck: one card (in its largest rendering, plus its <update><card> wrapper) must fit
  // in one stanza, or a sync page or an <updates/> batch holding it could never be sent.
  const budget = new StanzaBudget(c.link.stanzaLimitBytes);
  if (c.card.maxBytes > budget.maxCardBytes) {
    throw new ConfigError(
      `card.maxBytes (${c.card.maxBytes}) does not fit in one stanza under link.stanzaLimitBytes ` +
        `(${c.link.stanzaLimitBytes}): with the stanza envelope and the per-card wrapper (${ITEM_RESERVE} bytes) ` +
        `the largest card is ${budget.maxCardBytes} bytes; lower card.maxBytes or raise link.stanzaLimitBytes ` +
        `(and the server's component_stanza_size_limit / max_stanza_size with it)`,
    );
  }
}

/** Parses xmpp://host:port. */
export function serviceAddress(service: string): { host: string; port: number } {
  const m = /^xmpp:\/\/([^:/]+):(\d+)$/.exec(service);
  if (!m) throw new ConfigError(`bad service ${service}`);
  return { host: m[1] as string, port: Number(m[2]) };
}

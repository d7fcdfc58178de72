/**
 * cardlink configuration: defaults ← JSON file ← environment. Read and checked once at start-up; the rest of
 * the code receives a frozen, fully-typed Config and never reads process.env itself. Reference: docs/CONFIG.md.
 *
 * One zod schema (`configSchema`) is the single source of every setting's type, default, bounds and one-line
 * description; `Config` is inferred from it, and test/unit/config-docs.test.ts checks docs/CONFIG.md's tables
 * against it (through `describeConfig`) so the two cannot drift apart.
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import path from "node:path";
import * as z from "zod";
import { ITEM_RESERVE, LINK_LIMIT_MAX, LINK_LIMIT_MIN, StanzaBudget } from "./budget.js";
import { secretKey } from "./webhooks/signature.js";

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

// ------------------------------------------------------------------------------------------- schema parts

/**
 * What a setting carries besides its zod type. `min`/`max` are the bounds as documented (the docs test checks
 * them against CONFIG.md); `providerDefault` is a default applied by the push provider's constructor rather
 * than by the schema (push.apns / push.fcm are handed to it exactly as written); `inline` marks an object
 * documented as one row, not key by key.
 */
interface SettingMeta {
  description: string;
  min?: number;
  max?: number;
  providerDefault?: unknown;
  inline?: boolean;
}

function meta<T extends z.ZodType>(schema: T, m: SettingMeta): T {
  return schema.meta({ ...m });
}

/** A number in [min, max]; the message is completed with the key's path ("iqTimeoutMs must be between …"). */
function bounded(min: number, max: number, opts: { int?: boolean } = {}) {
  return z.number().refine((v) => v >= min && v <= max && (!opts.int || Number.isInteger(v)), {
    message: opts.int
      ? `must be a whole number between ${min} and ${max}`
      : `must be between ${min} and ${max}`,
  });
}

function num(def: number, min: number, max: number, description: string) {
  return meta(bounded(min, max).prefault(def), { description, min, max });
}

function str(def: string, description: string) {
  return meta(z.string().prefault(def), { description });
}

function strings(def: string[], description: string) {
  return meta(z.array(z.string()).prefault(def), { description });
}

/**
 * Defaults are zod "prefaults": a missing value is replaced by the default *before* parsing, so the default
 * passes the same checks as a written value (an empty `secret` is refused whether written or left out).
 * A section missing in the file is {}, which fills in each of its keys' defaults.
 */
function section<S extends z.ZodRawShape>(shape: S) {
  const o = z.strictObject(shape);
  // Every key of a section has a default, so {} is a valid input; TypeScript cannot see that for a generic S.
  return o.prefault({} as z.input<typeof o>);
}

const LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;
const NOTICES = ["alert", "background", "none"] as const;

const notice = (def: (typeof NOTICES)[number], description: string) =>
  meta(
    z
      .enum(NOTICES, { error: (iss) => `must be alert, background or none, not '${String(iss.input)}'` })
      .prefault(def),
    { description },
  );

const pushText = (title: string, body: string, what: string) =>
  section({
    title: str(title, `title of ${what} alerts`),
    body: meta(
      z
        .string()
        .refine((v) => v.trim() !== "", { message: "must not be empty" })
        .prefault(body),
      { description: `body of ${what} alerts` },
    ),
    locKey: str("", `localization key of ${what} alerts ("" = none)`),
  });

/** A string a provider cannot do without: "" counts as missing, as push/senders.ts has always treated it. */
const required = () => z.string({ error: "is required" }).min(1, { error: "is required" });
const optionalString = (description: string) => meta(z.string().optional(), { description });

/** `null` switches a provider off, like leaving the key out (docs/CONFIG.md). */
function provider<T extends z.ZodType>(schema: T, description: string) {
  return meta(
    z.preprocess((v) => (v === null ? undefined : v), schema.optional()),
    { description },
  );
}

/**
 * push.apns, read by push/apns.ts (ApnsConfig). Only the shape is checked here: the credentials themselves are
 * loaded by the provider's constructor (push/senders.ts), whose errors name the key too.
 */
const apnsSchema = z
  .strictObject({
    production: meta(z.boolean({ error: "must be true or false" }), {
      description: "true: api.push.apple.com; false: api.sandbox.push.apple.com",
    }),
    token: meta(z.strictObject({ key: required(), keyId: required(), teamId: required() }).optional(), {
      description: "token auth: { key (.p8 path or PEM), keyId, teamId }",
      inline: true,
    }),
    cert: optionalString("certificate auth: client certificate (path or PEM), used only without token"),
    key: optionalString("certificate auth: private key (path or PEM)"),
    passphrase: optionalString("certificate auth: passphrase of the key"),
    defaultTopic: optionalString("apns-topic (bundle id) for devices that registered none"),
    address: optionalString("host to connect to instead of Apple's (test stand-ins)"),
    port: meta(bounded(1, 65535, { int: true }).optional(), {
      description: "port to connect to",
      min: 1,
      max: 65535,
      providerDefault: 443,
    }),
    ca: optionalString("extra trusted CA (path or PEM)"),
    connections: meta(bounded(1, 64, { int: true }).optional(), {
      description: "HTTP/2 sessions to open",
      min: 1,
      max: 64,
      providerDefault: 2,
    }),
    requestTimeoutMs: meta(bounded(100, 600_000).optional(), {
      description: "deadline per batch of requests",
      min: 100,
      max: 600_000,
      providerDefault: 10_000,
    }),
  })
  .refine((a) => a.token !== undefined || (a.cert !== undefined && a.cert !== ""), {
    message: "needs token {key, keyId, teamId} or cert + key",
  })
  // Certificate auth needs both halves; under token auth cert/key are ignored (push/apns.ts).
  .refine((a) => a.token !== undefined || !a.cert || (a.key !== undefined && a.key !== ""), {
    message: "is required with push.apns.cert",
    path: ["key"],
  });

/** push.fcm, read by push/fcm.ts (FcmConfig). */
const fcmSchema = z.strictObject({
  serviceAccount: meta(required(), { description: "path to the Google service-account JSON key" }),
  projectId: optionalString("Firebase project (default: the key's project_id)"),
  batchSize: meta(bounded(1, 500, { int: true }).optional(), {
    description: "messages per sendEach() call",
    min: 1,
    max: 500,
    providerDefault: 500,
  }),
  parallelBatches: meta(bounded(1, 64, { int: true }).optional(), {
    description: "sendEach() calls in flight",
    min: 1,
    max: 64,
    providerDefault: 4,
  }),
  requestTimeoutMs: meta(bounded(100, 600_000).optional(), {
    description: "deadline per sendEach() call",
    min: 100,
    max: 600_000,
    providerDefault: 30_000,
  }),
  dataOnlyForBackground: meta(z.literal(true, { error: "can only be true" }).optional(), {
    description: "background notices are data-only (the only behaviour; states it)",
  }),
});

const pushSchema = section({
  policy: section({
    ios: notice("alert", "notice for an offline user's iOS devices"),
    android: notice("background", "notice for an offline user's Android devices"),
  }),
  ttlSeconds: num(24 * 3600, 0, 30 * 86_400, "how long a notice stays deliverable at the provider"),
  perDeviceHourlyBudget: num(6, 1, 10_000, "notices per device per rolling hour; further ones coalesce"),
  concurrency: num(64, 1, 10_000, "notices taken from the queue per dispatch round"),
  // Bounds checked together with retryMaxMs below (one message names both).
  retryBaseMs: meta(z.number().prefault(1_000), {
    description: "first retry delay after a transient failure",
  }),
  retryMaxMs: meta(z.number().prefault(10 * 60_000), { description: "retry delay cap" }),
  maxAttempts: num(8, 1, 100, "attempts before a notice is dropped"),
  alertText: pushText("Contacts", "A contact card was updated. Open the app to see it.", "card-update"),
  messageText: pushText("Messages", "You have a new message.", "XEP-0357 message"),
  apns: provider(apnsSchema, "APNs provider (absent = off)"),
  fcm: provider(fcmSchema, "FCM provider (absent = off)"),
});

/**
 * Shares and caps that keep one user from degrading another (docs/CONFIG.md "limits", PROTOCOL.md "Quotas and
 * rate limits"). Every shared resource has a global cap and a per-user share below it; every stored per-user
 * collection has a cap.
 */
const limitsSchema = section({
  maxDepth: num(32, 8, 256, "deepest XML nesting accepted in an inbound stanza"),
  adhocSessions: num(10_000, 1, 1_000_000, "open XEP-0050 sessions, all users together"),
  adhocSessionsPerUser: num(10, 1, 1000, "open XEP-0050 sessions per user"),
  pendingIqs: num(100_000, 1, 10_000_000, "IQs cardlink waits on, in all"),
  pendingIqsPerUser: num(64, 1, 100_000, "IQs cardlink waits on per recipient"),
  resourcesPerUser: num(10, 1, 1000, "available resources tracked per user"),
  devicesPerUser: num(20, 1, 1000, "registered devices per user"),
  blocksPerUser: num(1000, 1, 100_000, "blocked JIDs per user"),
  codesPerUser: num(10, 1, 1000, "unused, unexpired exchange codes per user"),
  redeemFailuresPerUser: num(10, 1, 10_000, "failed redeems per user in the window"),
  redeemFailuresPerHost: num(200, 2, 1_000_000, "failed redeems per sending domain in the window"),
  redeemWindowSeconds: num(600, 10, 86_400, "the sliding window of both redeem limits"),
  rateLimiterKeys: num(100_000, 100, 10_000_000, "keys each rate limiter remembers at most"),
});

/** A connector's name: the job target, a metric label, what dead letters and the admin show. */
const CONNECTOR_NAME = /^[a-z][a-z0-9-]{0,31}$/;
/** Profile settings a linked account can sync (features/linked); a connector says which its service takes. */
export const SYNC_SETTINGS = ["nickname", "avatar", "status"] as const;

/** One webhook receiver (runtime/webhooks/; docs/CONFIG.md "Webhooks"). */
const connectorSchema = z.strictObject({
  name: z.string().refine((v) => CONNECTOR_NAME.test(v), {
    error: (iss) => `'${String(iss.input)}' must match ${CONNECTOR_NAME}`,
  }),
  url: z.string().refine(
    (v) => {
      try {
        return new URL(v).protocol === "https:";
      } catch {
        return false;
      }
    },
    { error: (iss) => `'${String(iss.input)}' is not an https:// URL` },
  ),
  secret: z.string().superRefine((v, ctx) => {
    try {
      secretKey(v);
    } catch (e) {
      ctx.addIssue({ code: "custom", message: (e as Error).message });
    }
  }),
  settings: z
    .array(z.enum(SYNC_SETTINGS, { error: () => `must be ${SYNC_SETTINGS.join(", ")}` }))
    .prefault([...SYNC_SETTINGS]),
  timeoutMs: bounded(100, 120_000).prefault(10_000),
  caFile: z.string().optional(),
});

const webhooksSchema = section({
  concurrency: num(16, 1, 1000, "webhooks posted at once (per round of the channel)"),
  maxAttempts: num(8, 1, 100, "attempts before a webhook is dead-lettered"),
  retryBaseMs: num(5_000, 100, 3_600_000, "first retry delay (full-jitter exponential backoff)"),
  retryMaxMs: num(3_600_000, 1_000, 86_400_000, "retry delay cap (a longer Retry-After is still honoured)"),
  connectors: meta(z.array(connectorSchema).prefault([]), {
    description: "the receivers: name, url, secret, settings, timeoutMs, caFile",
    inline: true,
  }),
});

export const configSchema = z.strictObject({
  domain: meta(
    z
      .string()
      .refine((v) => /^[a-z0-9.-]+$/i.test(v), {
        error: (iss) => `'${String(iss.input)}' is not a domain name`,
      })
      .prefault("cards.localhost"),
    { description: "the component's domain: Prosody's Component \"cards.example.org\"" },
  ),
  secret: meta(
    z
      .string()
      .refine((v) => v !== "", {
        message: "is empty: set it to Prosody's component_secret (or CARDLINK_SECRET)",
      })
      .prefault(""),
    { description: "Prosody's component_secret (required)" },
  ),
  service: meta(
    z
      .string()
      .refine((v) => /^xmpp:\/\/[^:/]+:\d+$/.test(v), {
        error: (iss) => `'${String(iss.input)}' must look like xmpp://127.0.0.1:5347`,
      })
      .prefault("xmpp://127.0.0.1:5347"),
    { description: "Prosody's component port (xmpp://host:port); plaintext: keep it on loopback" },
  ),
  servedHosts: meta(
    z
      .array(z.string())
      .refine((v) => v.length > 0, { message: "must name at least one Prosody host" })
      .prefault(["localhost"]),
    { description: "the Prosody VirtualHosts whose users cardlink serves" },
  ),
  allowedDomains: strings([], "domains whose JIDs may talk to cardlink ([] = servedHosts)"),
  admins: strings([], "bare JIDs allowed to run the admin ad-hoc commands"),
  dataDir: str("", "data directory ('' = $STATE_DIRECTORY, else /var/lib/cardlink)"),
  database: section({
    // postgres: every command runs on it but `cardlink backup` (SQLite's file copy; pg_dump instead).
    driver: meta(z.enum(["sqlite", "postgres"], { error: "must be sqlite or postgres" }).prefault("sqlite"), {
      description: "storage backend",
    }),
    path: str("", "the SQLite file ('' = <dataDir>/cardlink.sqlite)"),
    url: str("", "PostgreSQL connection URL ('' = the libpq environment: PGHOST, PGDATABASE, …)"),
    poolSize: num(10, 1, 1000, "most PostgreSQL connections one process opens"),
    // Off only behind a pooler that loses them between transactions (PgBouncer's transaction mode before 1.21).
    preparedStatements: meta(z.boolean().prefault(true), {
      description: "PostgreSQL: prepare each statement once per connection",
    }),
    busyTimeoutMs: num(5_000, 0, 60_000, "how long a write waits for another connection's lock (SQLite)"),
    txWarnMs: num(50, 0, 60_000, "a unit of work holding the write lock longer is logged slow-unit-of-work"),
    // SQLite's WAL checkpoints on a worker thread (storage/sqlite/checkpointer.ts, docs/DECISIONS.md).
    checkpointIntervalMs: num(
      1_000,
      0,
      60_000,
      "period of the SQLite checkpoint worker's PASSIVE WAL checkpoints (0 = SQLite's inline ones)",
    ),
    walLimitPages: num(
      10_000,
      1_000,
      1_000_000,
      "SQLite WAL length (pages) at which the checkpoint worker forces a RESTART checkpoint",
    ),
  }),
  log: section({
    level: meta(z.enum(LEVELS, { error: `must be one of ${LEVELS.join(", ")}` }).prefault("info"), {
      description: "pino log level",
    }),
    rawStream: meta(z.boolean().prefault(false), { description: "log every byte on the component stream" }),
  }),
  reconnect: section({
    initialDelayMs: num(250, 10, 60_000, "first reconnect delay"),
    maxDelayMs: num(30_000, 100, 3_600_000, "cap of the reconnect backoff"),
  }),
  iqTimeoutMs: num(15_000, 100, 600_000, "how long cardlink waits for a reply to an IQ it sent"),
  maxStanzaBytes: num(256 * 1024, 1024, 16 * 1024 * 1024, "largest inbound stanza (bytes of serialized XML)"),
  link: section({
    // Prosody's `component_stanza_size_limit`, ejabberd's `max_stanza_size` on the ejabberd_service listener.
    // Every stanza cardlink sends is built to fit it (component/runtime/budget.ts).
    stanzaLimitBytes: meta(
      bounded(LINK_LIMIT_MIN, LINK_LIMIT_MAX)
        .refine((v) => Number.isInteger(v), { message: "must be a whole number" })
        .prefault(512 * 1024),
      {
        description: "largest stanza the server accepts from cardlink",
        min: LINK_LIMIT_MIN,
        max: LINK_LIMIT_MAX,
      },
    ),
    // On by the fanout benchmark (docs/BENCHMARKS.md): fewer, larger reads for Prosody; a lone stanza waits
    // for the end of its event-loop turn only (the latency benchmark's update_corked case).
    corkWrites: meta(z.boolean().prefault(true), {
      description: "stanzas written in one event-loop turn leave in one socket write",
    }),
  }),
  shutdownGraceMs: num(5_000, 0, 600_000, "how long shutdown waits for in-flight work"),
  metricsPort: num(0, 0, 65535, "port of /metrics and /healthz (0 = off)"),
  metricsAddress: meta(
    z
      .string()
      .refine((v) => isIP(v) !== 0 || v === "localhost", {
        error: (iss) => `'${String(iss.input)}' must be an IP address (e.g. 127.0.0.1 or ::1)`,
      })
      .prefault("127.0.0.1"),
    { description: "address the metrics listener binds" },
  ),
  card: section({
    maxBytes: num(96 * 1024, 512, 1024 * 1024, "UTF-8 bytes of a submitted card"),
    maxPhotoBytes: num(64 * 1024, 0, 1024 * 1024, "UTF-8 bytes of an inline data: photo URI"),
    maxItemsPerField: num(20, 1, 1000, "entries of one card property"),
    maxTextLength: num(1024, 16, 65536, "code points of any one card value"),
  }),
  book: section({
    maxEntries: num(5_000, 1, 100_000, "entries one user's address book may hold"),
    maxBytes: num(32 * 1024 * 1024, 64 * 1024, 1024 * 1024 * 1024, "UTF-8 bytes of one user's book entries"),
    requestTtlSeconds: num(7 * 24 * 3600, 2, 365 * 86_400, "lifetime of an unanswered update request"),
    requestsPerHour: num(20, 1, 10_000, "update requests one user may send per hour"),
    maxOpenRequestsSent: num(50, 1, 10_000, "open update requests one user may have out"),
    maxOpenRequestsReceived: num(50, 1, 10_000, "open update requests one user may be waiting to answer"),
  }),
  exchange: section({
    codeTtlSeconds: num(300, 10, 86_400, "lifetime of a one-time exchange code"),
    requestTtlSeconds: num(7 * 24 * 3600, 60, 365 * 86_400, "lifetime of an unanswered exchange request"),
    maxPendingPerUser: num(50, 1, 10_000, "unanswered exchange requests one user may have out"),
  }),
  groups: section({
    maxMembers: num(5_000, 2, 100_000, "members of one group, the owner included"),
    ownedPerUser: num(100, 1, 10_000, "groups one user owns"),
    joinedPerUser: num(500, 1, 100_000, "groups one user is a member of, owned ones included"),
    pendingInvitationsPerGroup: num(500, 1, 100_000, "unanswered, unexpired invitations of one group"),
    invitationTtlSeconds: num(14 * 86_400, 60, 365 * 86_400, "lifetime of an unanswered group invitation"),
    exemptionsPerUser: num(1_000, 1, 100_000, "co-members one user exempts from receiving their card"),
    codeTtlSeconds: num(86_400, 60, 30 * 86_400, "lifetime of a one-time group code"),
    codesPerUser: num(10, 1, 1_000, "unused, unexpired group codes one user may have"),
    pollMinSeconds: num(300, 60, 86_400, "shortest polling interval a member may choose for a group"),
    pollMaxSeconds: num(
      7 * 86_400,
      3_600,
      90 * 86_400,
      "longest polling interval a member may choose for a group",
    ),
  }),
  // Issue 12 (docs/PROTOCOL.md §23): identifiers, their verification, moves and registered services.
  identity: section({
    maxIdentifiers: num(
      10,
      1,
      100,
      "phone numbers and e-mail addresses one user may hold, held ones included",
    ),
    maxPending: num(3, 1, 20, "verifications one user may have open at once"),
    codeTtlSeconds: num(600, 30, 86_400, "lifetime of a verification code"),
    codeAttempts: num(5, 1, 20, "wrong codes before a verification is dropped"),
    cooldownSeconds: num(
      90 * 86_400,
      1,
      3650 * 86_400,
      "how long a moved or removed identifier stays held: nobody else can claim it",
    ),
    moveOfferTtlSeconds: num(86_400, 60, 30 * 86_400, "lifetime of an unanswered move offer"),
    verifierUrl: str(
      "",
      "verification connector: URL the code is POSTed to ('' = phone/e-mail verification off)",
    ),
    verifierToken: str("", "verification connector: bearer token sent with each POST"),
    verifierTimeoutMs: num(10_000, 100, 120_000, "verification connector: timeout of one POST"),
    maxServices: num(500, 1, 100_000, "registered services one user may keep"),
    serviceRules: meta(
      z
        .array(
          z.strictObject({
            remark: z.string().min(1).max(64),
            mode: z.enum(["automatic", "manual"]),
          }),
        )
        .max(200)
        .prefault([]),
      { description: "type rules: a service whose remark equals `remark` (case-insensitive) is `mode`" },
    ),
    providers: meta(
      z
        .array(
          z.strictObject({
            name: z.string().min(1).max(128),
            automatic: z.boolean(),
            contact: z.string().max(256).optional(),
            connector: z.string().max(64).optional(),
          }),
        )
        .max(10_000)
        .prefault([]),
      {
        description:
          "providers: `name`, `automatic` (accepts automatic updates), `contact`, `connector` (a webhooks.connectors name)",
      },
    ),
  }),
  linked: section({
    maxAccounts: num(10, 2, 100, "accounts in one person's linked set, every service included"),
    pendingPerUser: num(
      10,
      1,
      1_000,
      "unanswered link requests and unconfirmed service links one user has out",
    ),
    requestTtlSeconds: num(7 * 86_400, 60, 90 * 86_400, "lifetime of an unanswered link request"),
    codeTtlSeconds: num(600, 60, 86_400, "lifetime of a service's one-time verification code"),
    codeFailuresPerUser: num(5, 1, 100, "wrong verification codes one user may send in the window"),
    codeWindowSeconds: num(900, 60, 86_400, "the window of codeFailuresPerUser"),
    maxNicknameLength: num(64, 1, 1024, "code points of a synced nickname"),
    maxStatusLength: num(512, 0, 4096, "code points of a synced status text"),
    maxAvatarBytes: num(65_536, 1_024, 262_144, "bytes of a synced avatar image (PNG, JPEG or GIF)"),
    privilegedTimeoutMs: num(10_000, 1_000, 120_000, "deadline of one privileged PEP publish (XEP-0356)"),
    concurrency: num(16, 1, 1_000, "sync messages to XMPP accounts handled at once"),
    maxAttempts: num(8, 1, 100, "attempts of a sync message to an XMPP account before it is dropped"),
  }),
  delivery: section({
    ackTimeoutMs: num(15_000, 100, 600_000, "how long an <updates/> IQ may stay unanswered"),
    retryBaseMs: num(1_000, 10, 600_000, "first delivery retry delay"),
    retryMaxMs: num(5 * 60_000, 100, 86_400_000, "delivery retry delay cap"),
    batchSize: num(20, 1, 200, "most entries carried by one <updates/> IQ"),
    // A compact page (PROTOCOL §10.8) is ~40 % smaller per update and costs Prosody ~3× less per update, so its
    // IQs carry more (measured: docs/BENCHMARKS.md "fanout", issue 8 compact).
    compactBatchSize: num(
      50,
      1,
      200,
      "most entries carried by one <updates/> IQ to a device that asked for compact updates",
    ),
    // 0 by measurement (S15, docs/BENCHMARKS.md "fanout"): 50 ms held every update of a steadily busy lane for
    // up to 50 ms (the latency benchmark's busy link: p50 46 ms) and bought nothing measurable for many owners.
    coalesceWindowMs: num(0, 0, 1000, "a lane sent to less than this long ago waits until then"),
    ackBatchMs: num(2, 0, 50, "acknowledgements written together"),
    maxConcurrentConsumers: num(256, 1, 10_000, "consumers with a delivery round in progress at once"),
    deviceIdleDays: num(30, 1, 365, "a device cursor idle this long goes dormant"),
    sharedIdleDays: num(2, 1, 365, "a shared cursor of an account with device cursors goes dormant"),
  }),
  // Read by the queue engine of the redesign (docs/REDESIGN.md §3.7); defined now so later steps only read.
  queue: section({
    leaseMs: num(30_000, 1_000, 3_600_000, "claim lease of a cursor or job (≥ delivery.ackTimeoutMs + 5000)"),
    heartbeatMs: num(
      5_000,
      1_000,
      60_000,
      "process heartbeat; a lease of a process silent for 3 beats is free",
    ),
    // true: one process per database (SQLite always). Several processes on one PostgreSQL set false (with
    // persistInflight true): runtime/wake.ts, docs/OPERATIONS.md "Several processes behind ejabberd".
    exclusive: meta(z.boolean().prefault(true), {
      description: "one process per database: clear all leases at start",
    }),
    persistInflight: meta(z.boolean().prefault(false), {
      description: "write inflight_iq at claim, so another process can apply a remote ack",
    }),
    observerPollMs: num(1_000, 100, 60_000, "observers' safety-net poll"),
    pollMs: num(
      1_000,
      100,
      60_000,
      "due retries and jobs safety-net poll; also sweeps stream lanes a dead process held",
    ),
    deadLetterDays: num(30, 1, 3650, "days dead letters are kept"),
  }),
  accounts: section({
    cacheSize: num(100_000, 100, 10_000_000, "JID ↔ account ids the cache holds"),
    cacheTtlMs: num(60_000, 0, 3_600_000, "how long a cached JID ↔ account mapping is used"),
  }),
  push: pushSchema,
  webhooks: webhooksSchema,
  limits: limitsSchema,
});

export type Config = z.infer<typeof configSchema>;
export type PushConfig = Config["push"];
export type LimitsConfig = Config["limits"];
export type WebhooksConfig = Config["webhooks"];
export type ConnectorConfig = WebhooksConfig["connectors"][number];

// ------------------------------------------------------------------------------------ cross-field checks

/**
 * Checks that relate several settings, run once every setting is valid on its own (their bounds are then known
 * to hold). Each message names every key involved.
 */
function crossCheck(c: Config): string[] {
  const problems: string[] = [];
  const p = c.push;
  if (p.retryBaseMs < 10 || p.retryMaxMs < p.retryBaseMs || p.retryMaxMs > 86_400_000)
    problems.push("push.retryBaseMs must be ≥ 10 and ≤ push.retryMaxMs ≤ 86400000");
  if (c.reconnect.maxDelayMs < c.reconnect.initialDelayMs)
    problems.push("reconnect.maxDelayMs must be ≥ reconnect.initialDelayMs");
  if (c.webhooks.retryMaxMs < c.webhooks.retryBaseMs)
    problems.push("webhooks.retryMaxMs must be ≥ webhooks.retryBaseMs");
  const names = c.webhooks.connectors.map((k) => k.name);
  for (const n of new Set(names.filter((n, i) => names.indexOf(n) !== i)))
    problems.push(`webhooks.connectors: the name '${n}' is used twice`);
  if (c.delivery.retryMaxMs < c.delivery.retryBaseMs)
    problems.push("delivery.retryMaxMs must be ≥ delivery.retryBaseMs");
  // A lease must outlive the IQ it covers, or a second claimer could send the same batch while it is in flight.
  if (c.queue.leaseMs < c.delivery.ackTimeoutMs + 5000)
    problems.push("queue.leaseMs must be ≥ delivery.ackTimeoutMs + 5000");
  // Several processes (issue 13): a delivery's result can reach another process than its sender (ejabberd
  // routes it by the user's bucket), which applies it only by the IQ id recorded on the cursor.
  if (!c.queue.exclusive && !c.queue.persistInflight)
    problems.push("queue.exclusive false (several processes) needs queue.persistInflight true");
  if (!c.queue.exclusive && c.database.driver !== "postgres")
    problems.push("queue.exclusive false (several processes) needs database.driver postgres");
  const l = c.limits;
  const below: Array<[string, number, string, number]> = [
    ["limits.adhocSessionsPerUser", l.adhocSessionsPerUser, "limits.adhocSessions", l.adhocSessions],
    ["limits.pendingIqsPerUser", l.pendingIqsPerUser, "limits.pendingIqs", l.pendingIqs],
    // One delivery sends an IQ to every resource of the recipient at once: they must fit in its share.
    ["limits.resourcesPerUser", l.resourcesPerUser, "limits.pendingIqsPerUser", l.pendingIqsPerUser],
  ];
  for (const [a, x, b, y] of below) if (x > y) problems.push(`${a} must be ≤ ${b}`);
  // A share equal to the whole would let one user exhaust the host's budget alone.
  if (l.redeemFailuresPerHost <= l.redeemFailuresPerUser)
    problems.push("limits.redeemFailuresPerHost must be above limits.redeemFailuresPerUser");
  if (c.card.maxPhotoBytes >= c.card.maxBytes)
    problems.push("card.maxPhotoBytes must be below card.maxBytes");
  // By construction, not by luck: one card (in its largest rendering, plus its <update><card> wrapper) must fit
  // in one stanza, or a sync page or an <updates/> batch holding it could never be sent.
  const budget = new StanzaBudget(c.link.stanzaLimitBytes);
  if (c.card.maxBytes > budget.maxCardBytes) {
    problems.push(
      `card.maxBytes (${c.card.maxBytes}) does not fit in one stanza under link.stanzaLimitBytes ` +
        `(${c.link.stanzaLimitBytes}): with the stanza envelope and the per-card wrapper (${ITEM_RESERVE} bytes) ` +
        `the largest card is ${budget.maxCardBytes} bytes; lower card.maxBytes or raise link.stanzaLimitBytes ` +
        `(and the server's component_stanza_size_limit / max_stanza_size with it)`,
    );
  }
  return problems;
}

// ------------------------------------------------------------------------------------------------ errors

const ARTICLE: Record<string, string> = {
  number: "a number",
  string: "a string",
  boolean: "a boolean",
  array: "an array",
  object: "an object",
};

/**
 * One line per zod issue, each naming the full key path. A type mismatch keeps the loader's historical wording
 * (`setting 'x' must be a number`); every other message is written in the schema without the key and gets it
 * prefixed here (`iqTimeoutMs must be between 100 and 600000`).
 */
function describeIssue(issue: z.core.$ZodIssue): string[] {
  // webhooks.connectors[0].secret: an array index reads as one.
  const at = (p: readonly PropertyKey[]): string =>
    p.map((k, i) => (typeof k === "number" ? `[${k}]` : i > 0 ? `.${String(k)}` : String(k))).join("");
  if (issue.code === "unrecognized_keys") {
    return issue.keys.map((k) => `unknown setting '${at([...issue.path, k])}'`);
  }
  const keyPath = issue.path;
  const last = keyPath[keyPath.length - 1];
  if (typeof last === "number" && issue.code === "invalid_type")
    return [`setting '${at(keyPath.slice(0, -1))}' must be an array of strings`];
  const key = at(keyPath);
  const generic = issue.message.startsWith("Invalid input");
  if (issue.code === "invalid_type" && generic) {
    if (issue.input === undefined) return [`${key} is required`];
    return [`setting '${key}' must be ${ARTICLE[issue.expected] ?? issue.expected}`];
  }
  return [key ? `${key} ${issue.message}` : issue.message];
}

function fail(issues: readonly z.core.$ZodIssue[]): never {
  // Unknown keys first: a typo explains the other problems it may cause (a default used instead).
  const ordered = [...issues].sort(
    (a, b) => Number(b.code === "unrecognized_keys") - Number(a.code === "unrecognized_keys"),
  );
  throw new ConfigError(ordered.flatMap(describeIssue).join("; "));
}

// -------------------------------------------------------------------------------------- sources and load

/**
 * The default data directory: systemd's $STATE_DIRECTORY (StateDirectory=cardlink; the first entry when several
 * are listed), else /var/lib/cardlink. Never relative to the working directory: a service started from another
 * directory must not silently create a second, empty database.
 */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  const state = env.STATE_DIRECTORY?.split(":")[0];
  return state && path.isAbsolute(state) ? state : "/var/lib/cardlink";
}

/** Every setting's default, with the derived ones (data directory, database path, allowed domains) filled in. */
export function defaultConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // The secret is the one setting without a usable default: parse with a stand-in, then hand back its "".
  const c = configSchema.parse({ secret: "-" });
  c.secret = "";
  return derive(c, env);
}

/** Environment variables, the setting each one sets, and how its text becomes a value. */
export const ENV_VARS: ReadonlyArray<{
  name: string;
  key: string;
  kind: "string" | "number" | "list" | "flag";
}> = [
  { name: "CARDLINK_DOMAIN", key: "domain", kind: "string" },
  { name: "CARDLINK_SECRET", key: "secret", kind: "string" },
  { name: "CARDLINK_SERVICE", key: "service", kind: "string" },
  { name: "CARDLINK_SERVED_HOSTS", key: "servedHosts", kind: "list" },
  { name: "CARDLINK_ALLOWED_DOMAINS", key: "allowedDomains", kind: "list" },
  { name: "CARDLINK_ADMINS", key: "admins", kind: "list" },
  { name: "CARDLINK_DATA_DIR", key: "dataDir", kind: "string" },
  { name: "CARDLINK_DB", key: "database.path", kind: "string" },
  { name: "CARDLINK_LOG_LEVEL", key: "log.level", kind: "string" },
  { name: "CARDLINK_LOG_RAW", key: "log.rawStream", kind: "flag" },
  { name: "CARDLINK_METRICS_PORT", key: "metricsPort", kind: "number" },
  { name: "CARDLINK_METRICS_ADDRESS", key: "metricsAddress", kind: "string" },
  { name: "CARDLINK_STANZA_LIMIT", key: "link.stanzaLimitBytes", kind: "number" },
];

function envValue(kind: "string" | "number" | "list" | "flag", v: string): unknown {
  switch (kind) {
    case "number":
      return Number(v);
    case "flag":
      return v === "1" || v === "true";
    case "list":
      return v
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);
    default:
      return v;
  }
}

type Raw = Record<string, unknown>;

function isObject(v: unknown): v is Raw {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Deep-merges `src` into `dst` (objects merge, anything else replaces); the schema judges the result. */
function mergeRaw(dst: Raw, src: Raw): void {
  for (const [k, v] of Object.entries(src)) {
    const cur = dst[k];
    if (isObject(cur) && isObject(v)) mergeRaw(cur, v);
    else dst[k] = isObject(v) ? structuredClone(v) : v;
  }
}

/** Sets a dotted key, creating missing sections; a section that is not an object is left for the schema to refuse. */
function setRaw(dst: Raw, key: string, value: unknown): void {
  const parts = key.split(".");
  let at = dst;
  for (const part of parts.slice(0, -1)) {
    if (at[part] === undefined) at[part] = {};
    const next = at[part];
    if (!isObject(next)) return;
    at = next;
  }
  at[parts[parts.length - 1] as string] = value;
}

export function loadConfig(
  opts: { file?: string; env?: NodeJS.ProcessEnv; overrides?: object } = {},
): Config {
  const env = opts.env ?? process.env;
  const raw: Raw = {};
  const file = opts.file ?? env.CARDLINK_CONFIG;
  if (file) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(file, "utf8"));
    } catch (e) {
      throw new ConfigError(`cannot read config file ${file}: ${(e as Error).message}`);
    }
    if (!isObject(parsed)) throw new ConfigError(`config file ${file} must hold a JSON object`);
    mergeRaw(raw, parsed);
  }
  if (opts.overrides) mergeRaw(raw, opts.overrides as Raw);
  for (const { name, key, kind } of ENV_VARS) {
    const v = env[name];
    if (v !== undefined && v !== "") setRaw(raw, key, envValue(kind, v));
  }
  const result = configSchema.safeParse(raw, { reportInput: true });
  if (!result.success) fail(result.error.issues);
  // An unset lease follows a long ack timeout instead of refusing a config that never mentioned the queue.
  const queueRaw = raw.queue;
  if (!isObject(queueRaw) || queueRaw.leaseMs === undefined) {
    result.data.queue.leaseMs = Math.max(result.data.queue.leaseMs, result.data.delivery.ackTimeoutMs + 5000);
  }
  const problems = crossCheck(result.data);
  if (problems.length > 0) throw new ConfigError(problems.join("; "));
  return Object.freeze(derive(result.data, env));
}

/** Fills the settings whose default depends on others (or on the environment). */
function derive(c: Config, env: NodeJS.ProcessEnv): Config {
  if (!c.dataDir) c.dataDir = defaultDataDir(env);
  if (c.allowedDomains.length === 0) c.allowedDomains = [...c.servedHosts];
  if (!c.database.path) c.database.path = path.join(c.dataDir, "cardlink.sqlite");
  return c;
}

// ------------------------------------------------------------------------------------------ introspection

/** One documented setting, as the schema defines it (docs/CONFIG.md has one table row per entry). */
export interface SettingInfo {
  key: string;
  type: "string" | "number" | "boolean" | "string[]" | "object" | "object[]";
  /** The default (the schema's, or for provider keys the provider's); undefined = none. */
  default: unknown;
  required: boolean;
  min?: number;
  max?: number;
  description: string;
}

/** Every setting of the schema, depth first, with its type, default, bounds and description. */
export function describeConfig(): SettingInfo[] {
  const out: SettingInfo[] = [];
  const walk = (
    s: z.ZodType,
    key: string,
    m: Partial<SettingMeta>,
    state: { def: unknown; opt: boolean },
  ) => {
    const here = { ...(z.globalRegistry.get(s) as Partial<SettingMeta> | undefined), ...m };
    if (s instanceof z.ZodPrefault || s instanceof z.ZodDefault) {
      walk(s.unwrap() as z.ZodType, key, here, { def: s.def.defaultValue, opt: true });
    } else if (s instanceof z.ZodOptional) {
      walk(s.unwrap() as z.ZodType, key, here, { ...state, opt: true });
    } else if (s instanceof z.ZodPipe) {
      // z.preprocess: the value's schema is the pipe's output side.
      walk(s.def.out as z.ZodType, key, here, state);
    } else if (s instanceof z.ZodObject && !here.inline) {
      if (key && here.description) out.push(info(key, "object", here, state));
      for (const [k, v] of Object.entries(s.shape)) {
        walk(v as z.ZodType, key ? `${key}.${k}` : k, {}, { def: undefined, opt: false });
      }
    } else {
      const type =
        s instanceof z.ZodNumber
          ? "number"
          : s instanceof z.ZodBoolean || (s instanceof z.ZodLiteral && typeof s.value === "boolean")
            ? "boolean"
            : s instanceof z.ZodArray
              ? s.element instanceof z.ZodObject
                ? "object[]"
                : "string[]"
              : s instanceof z.ZodObject
                ? "object"
                : "string";
      out.push(info(key, type, here, state));
    }
  };
  walk(configSchema, "", {}, { def: undefined, opt: false });
  return out;
}

function info(
  key: string,
  type: SettingInfo["type"],
  m: Partial<SettingMeta>,
  state: { def: unknown; opt: boolean },
): SettingInfo {
  return {
    key,
    type,
    default: state.def ?? m.providerDefault,
    required: !state.opt,
    ...(m.min !== undefined ? { min: m.min } : {}),
    ...(m.max !== undefined ? { max: m.max } : {}),
    description: m.description ?? "",
  };
}

/** Parses xmpp://host:port. */
export function serviceAddress(service: string): { host: string; port: number } {
  const m = /^xmpp:\/\/([^:/]+):(\d+)$/.exec(service);
  if (!m) throw new ConfigError(`bad service ${service}`);
  return { host: m[1] as string, port: Number(m[2]) };
}

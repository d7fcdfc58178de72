/**
 * The data set of test/fixtures/v200.sqlite: a small but complete database as the pre-redesign code (schema
 * version 200: migrations 1, 100, 200) wrote it, through that code's real store (SqliteStore, its migrations and
 * repositories) — not hand-made SQL. It is the starting point of the migration tests (the rekey to schema 2000:
 * test/unit/rekey-2000.test.ts, test/integration/migrated.test.ts), which compare what the rekey made with the
 * constants below. Every table holds rows, and every kind of pending state is there.
 *
 * The writer (populate/writeFixture) used the old repositories, deleted with the legacy core (issue 8 S11), so
 * it is no longer in this file: the committed fixture is what stays. It was written at commit 4294fa8; the
 * writer still runs at 73d7e7d (the last commit with the old store), where
 *
 *   npx tsc -p tsconfig.json && node dist/scripts/make-fixture-v200.js [out.sqlite]
 *
 * gives the same rows again (deterministic: a fixed clock stepping one second per Date.now call from
 * FIXTURE_CLOCK, and constant ids, tokens, codes and secrets).
 *
 * The data set (JIDs on example.org):
 *   alice  full card with an inline photo; iPhone (APNs token, topic, push key) and Android (FCM token) with a
 *          push node each; online (a persisted resource); her pending entries were delivered and acknowledged.
 *   bob    card changed twice (version 2); Android device whose token the provider declared dead; a live
 *          exchange code; grants cardlink a presence subscription.
 *   carol  card; device without push ("other"); an expired code not yet swept; shares only fn and email with
 *          dave; blocks erin.
 *   dave   the offline user: an iPhone with a push node and queued push notices (an alert and a background
 *          wake-up), and outbox entries of every kind pending — card, binding, exchange-request,
 *          exchange-declined, unbound.
 *   erin   no card; blocks mallory; was bound to dave and unbound (tombstones both ways); a pending request to
 *          dave.
 *   Bindings: alice–bob (request; alice shares fn, tel, email, work entries only, with bob), alice–carol (a
 *   code, now used up), bob–dave (request), carol–dave (code). Also a pending request erin → alice, and dave's
 *   request to mallory, declined.
 */
import { DEFAULT_CARD_LIMITS, type Card } from "../stanzas/model/card.js";
import type { SharePolicy } from "../stanzas/model/policy.js";
import { cardFromVcf } from "../stanzas/vcf.js";
import type { Db } from "../storage/sqlite/db.js";

// The old repositories' row shapes the data set is written in (storage/store.ts had them until S11).
interface Device {
  owner: string;
  deviceId: string;
  platform: "ios" | "android" | "other";
  name?: string;
  pushToken?: string;
  pushTopic?: string;
  pushKey?: string;
  tokenState: "none" | "ok" | "invalid";
  createdAt: number;
  updatedAt: number;
}
interface Binding {
  id: string;
  a: string;
  b: string;
  aDevices: string[];
  bDevices: string[];
  createdAt: number;
  via: "request" | "code";
}
interface ExchangeRequest {
  id: string;
  from: string;
  to: string;
  fromDevice?: string;
  createdAt: number;
  expiresAt: number;
}
interface ExchangeCode {
  code: string;
  owner: string;
  deviceId?: string;
  createdAt: number;
  expiresAt: number;
}
interface PushJob {
  id: string;
  owner: string;
  deviceId: string;
  platform: "ios" | "android";
  token: string;
  topic?: string;
  kind: "alert" | "background";
  collapseId: string;
  alert?: { title?: string; body: string; locKey?: string };
  data: Record<string, string>;
  expiresAt: number;
  attempts: number;
  nextAt: number;
}
interface PushNode {
  node: string;
  owner: string;
  deviceId: string;
  secret: string;
  createdAt: number;
}

/** 2026-01-15 12:00:00 UTC: the fixed clock the store reads while the fixture is written. */
export const FIXTURE_CLOCK = Date.UTC(2026, 0, 15, 12, 0, 0);
/** Far enough that a pending request, a live code or a queued notice is still pending whenever a test runs. */
export const FAR_FUTURE = Date.UTC(2100, 0, 1);
export const SCHEMA_VERSION = 200;

const H = "example.org";
export const JID = {
  alice: `alice@${H}`,
  bob: `bob@${H}`,
  carol: `carol@${H}`,
  dave: `dave@${H}`,
  erin: `erin@${H}`,
  mallory: `mallory@${H}`,
} as const;

// A 1×1 PNG: small, and a real image for the photo checks.
const PHOTO =
  "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

const vcf = (...lines: string[]): string =>
  ["BEGIN:VCARD", "VERSION:4.0", ...lines, "END:VCARD", ""].join("\r\n");

/** Cards as .vcf text, parsed by the current code's .vcf codec (so they are normalized exactly as stored). */
export const CARD_VCF = {
  alice: vcf(
    "FN:Alice Example",
    "N:Example;Alice;;Dr.;",
    "NICKNAME:Al",
    "ORG:Example Ltd;Research",
    "TITLE:Chief Scientist",
    "TEL;TYPE=work,voice;PREF=1:tel:+1-555-0101",
    "TEL;TYPE=cell:tel:+1-555-0102",
    "EMAIL;TYPE=work:alice@example.com",
    "EMAIL;TYPE=home:alice@example.net",
    "ADR;TYPE=work:;;1 Main Street;Springfield;IL;62701;USA",
    "URL:https://example.com/alice",
    "IMPP:xmpp:alice@example.org",
    "NOTE:Met at the 2025 conference.",
    "BDAY:1990-04-01",
    `PHOTO:${PHOTO}`,
    "CATEGORIES:friends,work",
  ),
  bob: vcf("FN:Bob Builder", "TEL;TYPE=work:tel:+1-555-0201", "EMAIL:bob@example.org"),
  /** bob's second version: what holders must end up with. */
  bob2: vcf("FN:Bob Builder", "TEL;TYPE=work:tel:+1-555-0299", "EMAIL:bob@example.org", "TITLE:Foreman"),
  carol: vcf("FN:Carol Client", "N:Client;Carol;;;", "EMAIL;TYPE=work:carol@example.org"),
  dave: vcf("FN:Dave Offline"),
} as const;

export function fixtureCard(name: keyof typeof CARD_VCF): Card {
  return cardFromVcf(CARD_VCF[name], DEFAULT_CARD_LIMITS);
}

type NewDevice = Omit<Device, "createdAt" | "updatedAt" | "tokenState">;
export const DEVICES: NewDevice[] = [
  {
    owner: JID.alice,
    deviceId: "alice-iphone",
    platform: "ios",
    name: "Alice's iPhone",
    pushToken: "a1".repeat(32),
    pushTopic: "org.example.cardlink",
    pushKey: Buffer.alloc(32, 7).toString("base64"),
  },
  {
    owner: JID.alice,
    deviceId: "alice-pixel",
    platform: "android",
    name: "Pixel",
    pushToken: "fcm:alice-pixel-token",
    pushTopic: "1:1234567890:android:abcdef",
  },
  { owner: JID.bob, deviceId: "bob-phone", platform: "android", pushToken: "fcm:bob-dead-token" },
  { owner: JID.carol, deviceId: "carol-laptop", platform: "other", name: "Laptop" },
  {
    owner: JID.dave,
    deviceId: "dave-iphone",
    platform: "ios",
    pushToken: "d4".repeat(32),
    pushTopic: "org.example.cardlink",
  },
];
/** The token the provider declared dead (bob's device keeps it, with token_state 'invalid'). */
export const DEAD_TOKEN = "fcm:bob-dead-token";

type NewBinding = Omit<Binding, "createdAt">;
export const BINDINGS: NewBinding[] = [
  {
    id: "b-alice-bob",
    a: JID.alice,
    b: JID.bob,
    aDevices: ["alice-iphone", "alice-pixel"],
    bDevices: ["bob-phone"],
    via: "request",
  },
  { id: "b-alice-carol", a: JID.alice, b: JID.carol, aDevices: ["alice-iphone"], bDevices: [], via: "code" },
  { id: "b-bob-dave", a: JID.bob, b: JID.dave, aDevices: [], bDevices: ["dave-iphone"], via: "request" },
  { id: "b-carol-dave", a: JID.carol, b: JID.dave, aDevices: ["carol-laptop"], bDevices: [], via: "code" },
];
/** Bound, then unbound: leaves tombstones and an `unbound` notice for each side. */
export const UNBOUND: NewBinding = {
  id: "b-dave-erin",
  a: JID.dave,
  b: JID.erin,
  aDevices: [],
  bDevices: [],
  via: "request",
};

export const POLICIES: Array<{ owner: string; holder: string; policy: SharePolicy }> = [
  { owner: JID.alice, holder: JID.bob, policy: { fields: ["fn", "tel", "email"], types: ["work"] } },
  { owner: JID.carol, holder: JID.dave, policy: { fields: ["fn", "email"] } },
];

export const BLOCKS: Array<[owner: string, blocked: string]> = [
  [JID.erin, JID.mallory],
  [JID.carol, JID.erin],
];

/** The requests that bound alice–bob and bob–dave (closed by the bind), and the pending and declined ones. */
const requestAt = (id: string, from: string, to: string, fromDevice?: string): ExchangeRequest => ({
  id,
  from,
  to,
  ...(fromDevice ? { fromDevice } : {}),
  createdAt: FIXTURE_CLOCK,
  expiresAt: FAR_FUTURE,
});
export const PENDING_REQUESTS: ExchangeRequest[] = [
  requestAt("r-erin-alice", JID.erin, JID.alice),
  requestAt("r-erin-dave", JID.erin, JID.dave),
];
export const DECLINED_REQUEST = requestAt("r-dave-mallory", JID.dave, JID.mallory, "dave-iphone");

export const CODES = {
  /** Live: bob can still hand it out. */
  live: {
    code: "BOBLIVE234",
    owner: JID.bob,
    deviceId: "bob-phone",
    createdAt: FIXTURE_CLOCK,
    expiresAt: FAR_FUTURE,
  },
  /** Expired a minute after the fixed clock, not swept yet. */
  expired: {
    code: "CAROLEXP23",
    owner: JID.carol,
    createdAt: FIXTURE_CLOCK,
    expiresAt: FIXTURE_CLOCK + 60_000,
  },
  /** Redeemed by carol (alice–carol): taken, so no row remains. */
  used: { code: "ALICEUSED2", owner: JID.alice, createdAt: FIXTURE_CLOCK, expiresAt: FAR_FUTURE },
} satisfies Record<string, ExchangeCode>;

export const PUSH_NODES: PushNode[] = [
  {
    node: "node-alice-iphone",
    owner: JID.alice,
    deviceId: "alice-iphone",
    secret: "c2VjcmV0LWFsaWNl",
    createdAt: FIXTURE_CLOCK,
  },
  {
    node: "node-dave-iphone",
    owner: JID.dave,
    deviceId: "dave-iphone",
    secret: "c2VjcmV0LWRhdmU=",
    createdAt: FIXTURE_CLOCK,
  },
];
/** The installation secret push refs are derived from (meta 'secret:push-ref-key'); random in production. */
export const PUSH_REF_KEY = Buffer.alloc(32, 42).toString("base64");

type NewJob = Omit<PushJob, "attempts" | "nextAt">;
const daveIos = {
  owner: JID.dave,
  deviceId: "dave-iphone",
  platform: "ios",
  token: "d4".repeat(32),
} as const;
export const PUSH_JOBS: NewJob[] = [
  {
    id: "p-dave-wake",
    ...daveIos,
    topic: "org.example.cardlink",
    kind: "background",
    collapseId: "cardlink-sync",
    data: { ref: "ref-dave-1" },
    expiresAt: FAR_FUTURE,
  },
  {
    id: "p-dave-request",
    ...daveIos,
    topic: "org.example.cardlink",
    kind: "alert",
    collapseId: "cardlink-request-r-erin-dave",
    alert: {
      title: "cardlink",
      body: "erin@example.org wants to exchange cards",
      locKey: "EXCHANGE_REQUEST",
    },
    data: { ref: "ref-dave-2", kind: "exchange-request" },
    expiresAt: FAR_FUTURE,
  },
];
/** Sent already: leaves a push_sent row (alice's hourly budget) and no queue row. */
export const SENT_JOB: NewJob = {
  id: "p-alice-sent",
  owner: JID.alice,
  deviceId: "alice-pixel",
  platform: "android",
  token: "fcm:alice-pixel-token",
  kind: "background",
  collapseId: "cardlink-sync",
  data: { ref: "ref-alice-1" },
  expiresAt: FAR_FUTURE,
};

export const RESOURCE = { bare: JID.alice, full: `${JID.alice}/phone` };
export const SUBSCRIBER = JID.bob;

export type RowDump = Record<string, Array<Record<string, unknown>>>;

/** Every table's rows, each table ordered by all of its columns: equal dumps mean equal databases. */
export function dumpRows(db: Db): RowDump {
  const tables = db
    .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
    .all() as Array<{ name: string }>;
  const out: RowDump = {};
  for (const { name } of tables) {
    const cols = (db.prepare(`PRAGMA table_info("${name}")`).all() as Array<{ name: string }>).length;
    const order = Array.from({ length: cols }, (_, i) => String(i + 1)).join(", ");
    out[name] = db.prepare(`SELECT * FROM "${name}" ORDER BY ${order}`).all() as Array<
      Record<string, unknown>
    >;
  }
  return out;
}

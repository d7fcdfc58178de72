/**
 * Writes test/fixtures/v200.sqlite: a small but complete database as the pre-redesign code (schema version
 * 200: migrations 1, 100, 200) writes it, through that code's real store (SqliteStore, its migrations and
 * repositories) — not hand-made SQL. It is the starting point of REDESIGN S2b's migration test (the rekey to
 * schema 2000): every table holds rows, and every kind of pending state is there.
 *
 *   npm run build && node dist/scripts/make-fixture-v200.js [out.sqlite]   (default test/fixtures/v200.sqlite)
 *
 * Deterministic: the clock is fixed (Date.now steps by one second per call from FIXTURE_CLOCK while the store
 * is written) and every id, token, code and secret is a constant, so a second run gives the same rows
 * (test/unit/fixture-v200.test.ts compares row dumps). It only runs on code whose schema is 200: after the
 * redesign's switch (S11) the old store is gone, and the committed file is what stays.
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
import { rmSync } from "node:fs";
import path from "node:path";
import { cardHash, DEFAULT_CARD_LIMITS, type Card } from "../stanzas/model/card.js";
import type { SharePolicy } from "../stanzas/model/policy.js";
import { cardFromVcf } from "../stanzas/vcf.js";
import { flattenModules } from "../storage/migrate.js";
import { LEGACY } from "../storage/sqlite/legacy.js";
import { SqliteStore } from "../storage/sqlite/store.js";
import type { Db } from "../storage/sqlite/db.js";
import type { Binding, Device, ExchangeCode, ExchangeRequest, PushJob, PushNode } from "../storage/store.js";

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

/** Writes the data set through the store; assumes the clock is already fixed. */
async function populate(store: SqliteStore): Promise<void> {
  for (const d of DEVICES) await store.devices.upsert(d, 10);
  await store.devices.invalidateToken(DEAD_TOKEN);

  for (const name of ["alice", "bob", "carol", "dave"] as const) {
    const card = fixtureCard(name);
    await store.cards.set(JID[name], card, cardHash(card));
  }

  const ex = store.exchange;
  // alice–bob and bob–dave by request (the request is closed by the bind), the others by code.
  await ex.createRequest(requestAt("r-bob-alice", JID.bob, JID.alice, "bob-phone"), {
    recipient: JID.alice,
    kind: "exchange-request",
    subject: "r-bob-alice",
    version: 1,
  });
  await ex.createRequest(requestAt("r-dave-bob", JID.dave, JID.bob), {
    recipient: JID.bob,
    kind: "exchange-request",
    subject: "r-dave-bob",
    version: 1,
  });
  const [aliceBob, aliceCarol, bobDave, carolDave] = BINDINGS as [
    NewBinding,
    NewBinding,
    NewBinding,
    NewBinding,
  ];
  await ex.bind(aliceBob, "r-bob-alice", Date.now());
  await ex.createCode(CODES.used, 10);
  await ex.takeCode(CODES.used.code);
  await ex.bind(aliceCarol, undefined, Date.now());
  await ex.bind(bobDave, "r-dave-bob", Date.now());
  await ex.bind(carolDave, undefined, Date.now());
  await ex.bind(UNBOUND, undefined, Date.now());
  await ex.unbind(UNBOUND.a, UNBOUND.b, [
    { recipient: UNBOUND.b, kind: "unbound", subject: UNBOUND.a, version: 1 },
    { recipient: UNBOUND.a, kind: "unbound", subject: UNBOUND.b, version: 1 },
  ]);
  for (const p of POLICIES) await store.cards.setPolicy(p.owner, p.holder, p.policy);
  // bob's change after the bindings: his holders' pending card entries now carry version 2.
  const bob2 = fixtureCard("bob2");
  await store.cards.set(JID.bob, bob2, cardHash(bob2));

  for (const [owner, blocked] of BLOCKS) await ex.block(owner, blocked, 100);
  for (const r of PENDING_REQUESTS) {
    await ex.createRequest(r, { recipient: r.to, kind: "exchange-request", subject: r.id, version: 1 });
  }
  await ex.createRequest(DECLINED_REQUEST, {
    recipient: DECLINED_REQUEST.to,
    kind: "exchange-request",
    subject: DECLINED_REQUEST.id,
    version: 1,
  });
  await ex.closeRequest(DECLINED_REQUEST.id, [
    {
      recipient: DECLINED_REQUEST.from,
      kind: "exchange-declined",
      subject: DECLINED_REQUEST.id,
      version: 1,
      payload: JSON.stringify({ id: DECLINED_REQUEST.id, by: DECLINED_REQUEST.to }),
    },
  ]);
  await ex.createCode(CODES.live, 10);
  await ex.createCode(CODES.expired, 10);

  // alice was online: everything pending for her was delivered and acknowledged.
  await store.outbox.ack(await store.outbox.due(JID.alice, FAR_FUTURE, 1000));

  for (const n of PUSH_NODES) await store.push.createNode(n);
  store.db.prepare("INSERT INTO meta (key, value) VALUES ('secret:push-ref-key', ?)").run(PUSH_REF_KEY);
  await store.push.enqueue([...PUSH_JOBS, SENT_JOB]);
  await store.push.sent([SENT_JOB.id], [SENT_JOB.token], Date.now());

  await store.presence.add(RESOURCE.bare, RESOURCE.full);
  await store.presence.addSubscriber(SUBSCRIBER);
}

/** Writes the fixture to `file` (replacing it) through the current store, with the clock fixed meanwhile. */
export async function writeFixture(file: string): Promise<void> {
  for (const f of [file, `${file}-wal`, `${file}-shm`]) rmSync(f, { force: true });
  const realNow = Date.now;
  let tick = 0;
  Date.now = () => FIXTURE_CLOCK + 1000 * tick++;
  try {
    // Exactly the pre-redesign schema (versions 1/100/200), whatever later legacy versions this code has (300
    // only adds indexes): the old repositories still run on it, and the file stays what S2b's rekey starts from.
    const store = new SqliteStore(file, { legacy: false });
    try {
      const upTo200 = { ...LEGACY, migrations: LEGACY.migrations.filter((m) => m.version <= SCHEMA_VERSION) };
      await store.migrate(flattenModules([upTo200]));
      if ((await store.schemaVersion()) !== SCHEMA_VERSION) {
        throw new Error(`the fixture database is not at schema ${SCHEMA_VERSION}`);
      }
      await populate(store);
      // Folds the WAL into the file, so the .sqlite alone is the whole database.
      store.db.pragma("wal_checkpoint(TRUNCATE)");
    } finally {
      await store.close();
    }
  } finally {
    Date.now = realNow;
  }
}

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

if (process.argv[1] && import.meta.url.endsWith(path.basename(process.argv[1]))) {
  const out = path.resolve(process.argv[2] ?? "test/fixtures/v200.sqlite");
  writeFixture(out).then(
    () => process.stdout.write(`${out}\n`),
    (e: unknown) => {
      process.stderr.write(`make-fixture-v200: ${(e as Error).stack ?? String(e)}\n`);
      process.exitCode = 1;
    },
  );
}

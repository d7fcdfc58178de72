/**
 * Writes test/golden/legacy-core/: what the legacy core (component/cards.ts, card-commands.ts, exchange.ts,
 * delivery.ts over the old store opened with openAppStore) produces for the inputs the new-core unit tests use.
 * Those tests (features-cards, features-commands, features-exchange, queue-registry) used to run the legacy code
 * side by side to prove the new core byte-identical; since issue 8 S11 deletes the legacy core, they compare the
 * new core's live output with these files instead (test/harness/legacy-golden.ts reads them).
 *
 *   npm run build && node dist/scripts/capture-legacy-goldens.js [out-dir]   (default test/golden/legacy-core)
 *
 * It only runs while the legacy core exists; the committed files are what stays (README.md there names the
 * commit they were captured at). Deterministic: the clock is fixed (Date.now returns CLOCK while it runs) and
 * every id is a constant; the only random inputs (code samples for the normalizer) are drawn once and written
 * into the inputs. A case is `<name>.in.json` (the legacy code's inputs) and `<name>.out.<ext>` (its output, byte
 * for byte). A random id of the live side appears as `{{request}}` / `{{binding}}` in both files: the capture
 * used a fixed id there and wrote the placeholder instead.
 *
 * The inputs are written out here a second time (the tests hold the same literals): a test checks that the
 * inputs it uses are the captured ones, so a drift between the two fails the test rather than passing silently.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { CardCommands } from "../component/card-commands.js";
import { cardContent, cardElement, type Cards } from "../component/cards.js";
import { updateId, type Delivery } from "../component/delivery.js";
import {
  Exchange,
  newCode as legacyNewCode,
  normalizeCode as legacyNormalize,
} from "../component/exchange.js";
import { newCode } from "../component/features/exchange/code.js";
import type { Command, CommandStep } from "../component/runtime/adhoc.js";
import { StanzaBudget } from "../component/runtime/budget.js";
import { parseJid } from "../component/runtime/jid.js";
import type { IqContext } from "../component/runtime/router.js";
import { cardHash, normalizeCard, type Card } from "../stanzas/model/card.js";
import { filterCard, type SharePolicy } from "../stanzas/model/policy.js";
import { xml, type Element } from "../stanzas/xml.js";
import { openAppStore, type AppStore } from "../storage/index.js";

/** 2023-11-14T22:13:20Z: the clock of the exchange tests' new side (their env's `clock.t`). */
const CLOCK = 1_700_000_000_000;
const WEEK = 7 * 86_400_000;
/** The fixed ids the capture uses where the live side's are random (written back as placeholders). */
const VARS: Record<string, string> = {
  request: "0b6c0c1e-0000-4000-8000-00000000000a",
  binding: "0b6c0c1e-0000-4000-8000-00000000000b",
};
const FORMATS = ["vcard4", "vcard-temp", "vcf"] as const;
type Format = (typeof FORMATS)[number];

const out = path.resolve(process.argv[2] ?? path.join("test", "golden", "legacy-core"));

/** Replaces every fixed id by its placeholder (outputs and inputs both). */
function placeholders(text: string): string {
  let s = text;
  for (const [k, v] of Object.entries(VARS)) s = s.split(v).join(`{{${k}}}`);
  return s;
}

function write(area: string, name: string, input: unknown, ext: string, output: string): void {
  const dir = path.join(out, area);
  mkdirSync(dir, { recursive: true });
  if (input !== undefined)
    writeFileSync(path.join(dir, `${name}.in.json`), placeholders(JSON.stringify(input, null, 2)) + "\n");
  writeFileSync(path.join(dir, `${name}.out.${ext}`), placeholders(output));
}

const tempDirs: string[] = [];
async function legacyStore(): Promise<AppStore> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "cardlink-goldens-"));
  tempDirs.push(dir);
  return openAppStore(
    {
      driver: "sqlite",
      path: path.join(dir, "legacy.sqlite"),
      url: "",
      poolSize: 1,
      busyTimeoutMs: 5000,
      txWarnMs: 50,
    },
    { log: pino({ level: "silent" }) },
  );
}

// ---- cards: component/cards.ts cardElement(meta, cardContent(view, format)) (test/unit/features-cards.test.ts)

function sampleCard(fn: string): Card {
  return normalizeCard({
    fn,
    n: { surname: fn, given: "Ada", additional: "", prefix: "", suffix: "" },
    nickname: ["Ada"],
    org: { name: "Analytical Engines", units: ["Research"] },
    title: "Countess",
    tel: [
      { key: "", types: ["work"], uri: "tel:+44-20-0001" },
      { key: "", types: ["home"], uri: "tel:+44-20-0002" },
    ],
    email: [
      { key: "", types: ["home"], value: "ada@home.example" },
      { key: "", types: ["work"], value: "ada@work.example" },
    ],
    adr: [],
    url: [{ key: "", types: ["work"], value: "https://engines.example" }],
    impp: [],
    note: "Notes on the engine & <more>",
    bday: "1815-12-10",
    categories: ["math"],
  });
}

const POLICIES: Array<SharePolicy | null> = [
  null,
  {},
  { fields: ["tel"] },
  { types: ["work"] },
  { fields: ["email", "note"], types: ["home"] },
  { fields: [] },
];

function captureCards(): void {
  const one = (name: string, owner: string, view: Card, format: Format): void => {
    const meta = { owner, version: 1, hash: cardHash(view) };
    write(
      "cards",
      name,
      { meta, card: view, format },
      "xml",
      cardElement(meta, cardContent(view, format)).toString(),
    );
  };
  const alice = "alice@localhost";
  const card = sampleCard("Lovelace");
  for (const format of FORMATS) {
    one(`render-owner-${format}`, alice, card, format);
    POLICIES.forEach((p, i) =>
      one(`render-policy${i}-${format}`, alice, p ? filterCard(card, p) : card, format),
    );
  }
  one("kind-bob", alice, filterCard(card, { fields: ["tel"], types: ["work"] }), "vcard4");
  one("kind-carol", alice, card, "vcard4");
  one("get-bob-alice-vcf", alice, filterCard(card, { fields: [] }), "vcf");
  one("sync-o3", "o3@localhost", filterCard(sampleCard("O3"), { fields: [] }), "vcard4");
}

// ---- commands: component/card-commands.ts over a legacy store (test/unit/features-commands.test.ts)

const A = "alice@a.example";
const B = "bob@a.example";
const C = "carol@a.example";
const CODE_TTL_SECONDS = 300;

const commandCard = (fn: string): Card =>
  normalizeCard({
    fn,
    nickname: [],
    org: { name: "Engines", units: [] },
    title: "Countess",
    tel: [{ key: "", types: ["work", "voice"], uri: "tel:+44-1" }],
    email: [{ key: "", types: [], value: `${fn.toLowerCase()}@mail.example` }],
    adr: [],
    url: [],
    impp: [],
    note: "line one\nline two",
    categories: [],
  });

/** What the legacy store holds before the command runs. */
interface Facts {
  cards?: Record<string, Card>;
  /** Pending requests (created at CLOCK, expiring a week later, as the new side's). */
  requests?: Array<{ id: string; from: string; to: string }>;
  /** Bindings by code, no devices, created at 1 (the old test's literals). */
  bindings?: Array<{ id: string; a: string; b: string }>;
}

async function seedFacts(store: AppStore, f: Facts): Promise<void> {
  for (const [jid, c] of Object.entries(f.cards ?? {})) await store.cards.set(jid, c, cardHash(c));
  for (const q of f.requests ?? [])
    await store.exchange.createRequest(
      { id: q.id, from: q.from, to: q.to, createdAt: CLOCK, expiresAt: CLOCK + WEEK },
      { recipient: q.to, kind: "exchange-request", subject: q.id, version: 1 },
    );
  for (const b of f.bindings ?? []) {
    const r = await store.exchange.bind(
      { id: b.id, a: b.a, b: b.b, aDevices: [], bDevices: [], via: "code" },
      undefined,
      1,
    );
    if (r === "exists") throw new Error(`binding ${b.id} exists`);
  }
}

function legacyCommands(store: AppStore): Command[] {
  const cmds: Command[] = [];
  const notUsed = {} as Cards & Exchange; // only the submit stages touch these; they are not run here
  new CardCommands(notUsed, notUsed).attach({
    adhoc: { register: (c: Command) => cmds.push(c) },
    store,
    config: { exchange: { codeTtlSeconds: CODE_TTL_SECONDS } },
    budget: new StanzaBudget(256 * 1024),
  } as unknown as Parameters<CardCommands["attach"]>[0]);
  return cmds;
}

const ctx = (user: string): IqContext => {
  const from = parseJid(`${user}/res`);
  if (!from) throw new Error(user);
  return { stanza: xml("iq"), payload: xml("command"), from, user };
};
/** A step as the client receives it: the form rendered, the notes (test/unit/features-commands.test.ts shown()). */
const shown = (s: CommandStep) => ({
  status: s.status,
  form: s.form?.toString(),
  notes: s.notes,
  state: s.state,
});

async function captureCommands(): Promise<void> {
  {
    const store = await legacyStore();
    try {
      write(
        "commands",
        "nodes",
        undefined,
        "json",
        JSON.stringify(
          legacyCommands(store).map((c) => `${c.node} ${c.name}`),
          null,
          2,
        ) + "\n",
      );
    } finally {
      await store.close();
    }
  }
  const ada = { [A]: commandCard("Ada") };
  const cases: Array<[string, { node: string; user: string; facts: Facts }]> = [
    ["show-card-none", { node: "show-card", user: A, facts: {} }],
    ["edit-card-none", { node: "edit-card", user: A, facts: {} }],
    ["show-card-ada", { node: "show-card", user: A, facts: { cards: ada } }],
    ["edit-card-ada", { node: "edit-card", user: A, facts: { cards: ada } }],
    ["request-exchange", { node: "request-exchange", user: A, facts: {} }],
    ["answer-requests-none", { node: "answer-requests", user: A, facts: {} }],
    [
      "answer-requests-one",
      {
        node: "answer-requests",
        user: A,
        facts: { requests: [{ id: VARS.request as string, from: B, to: A }] },
      },
    ],
    ["redeem-code", { node: "redeem-code", user: B, facts: {} }],
    ["contacts-none", { node: "contacts", user: A, facts: {} }],
    [
      "contacts-two",
      {
        node: "contacts",
        user: A,
        facts: {
          cards: { [B]: commandCard("Bob") },
          bindings: [
            { id: "b1", a: A, b: B },
            { id: "b2", a: A, b: C },
          ],
        },
      },
    ],
  ];
  for (const [name, input] of cases) {
    const store = await legacyStore();
    try {
      await seedFacts(store, input.facts);
      const cmd = legacyCommands(store).find((c) => c.node === `urn:cardlink:cmd:${input.node}`);
      if (!cmd) throw new Error(input.node);
      const step = await cmd.run(ctx(input.user), { node: "n", action: "execute" }, undefined);
      write("commands", name, input, "json", JSON.stringify(shown(step), null, 2) + "\n");
    } finally {
      await store.close();
    }
  }
}

// ---- exchange: component/exchange.ts's renderers and code functions (test/unit/features-exchange.test.ts)

async function captureExchange(): Promise<void> {
  const EA = "alice@a.example";
  const EB = "bob@a.example";
  const store = await legacyStore();
  try {
    const renderers = new Map<string, (x: object) => Promise<Element | null>>();
    const ex = new Exchange({
      register: (k: string, f: (x: object) => Promise<Element | null>) => renderers.set(k, f),
    } as unknown as Delivery);
    // attach() only to collect the renderers it registers; they read app.store (the real legacy store).
    ex.attach({
      config: {
        limits: {
          redeemWindowSeconds: 600,
          redeemFailuresPerUser: 10,
          redeemFailuresPerHost: 200,
          rateLimiterKeys: 1000,
        },
      },
      router: { iq: () => undefined },
      store,
      log: pino({ level: "silent" }),
    } as unknown as Parameters<Exchange["attach"]>[0]);
    ex.stop();
    const render = async (kind: string, entry: object): Promise<string> => {
      const f = renderers.get(kind);
      if (!f) throw new Error(`renderer ${kind} not registered`);
      const el = await f(entry);
      if (!el) throw new Error(`renderer ${kind} rendered nothing`);
      return el.toString();
    };
    // B asks A (B's device pb); A accepts from pa2 with pa registered: the new side's facts, at its clock.
    const request = {
      id: VARS.request as string,
      from: EB,
      to: EA,
      fromDevice: "pb",
      createdAt: CLOCK,
      expiresAt: CLOCK + WEEK,
    };
    const binding = {
      id: VARS.binding as string,
      a: EB,
      b: EA,
      aDevices: ["pb"],
      bDevices: ["pa", "pa2"],
      via: "request",
      createdAt: CLOCK,
    };
    const facts = { request, binding };
    await store.exchange.createRequest(request, {
      recipient: EA,
      kind: "exchange-request",
      subject: request.id,
      version: 1,
    });
    const put = async (name: string, kind: string, entry: object): Promise<void> =>
      write("exchange", name, { facts, kind, entry }, "xml", await render(kind, entry));
    // The request renders while it is pending: before the bind closes it.
    await put("render-exchange-request", "exchange-request", { recipient: EA, subject: request.id });
    const r = await store.exchange.bind(
      {
        id: binding.id,
        a: EB,
        b: EA,
        aDevices: binding.aDevices,
        bDevices: binding.bDevices,
        via: "request",
      },
      request.id,
      binding.createdAt,
    );
    if (r === "exists") throw new Error("bound twice");
    await put("render-binding", "binding", { recipient: EB, subject: binding.id });
    await put("render-unbound", "unbound", { recipient: EB, subject: EA });
    await put("render-exchange-declined", "exchange-declined", {
      recipient: EB,
      subject: "r1",
      payload: JSON.stringify({ id: "r1", by: EA }),
    });
  } finally {
    await store.close();
  }

  // normalizeCode: the old test's fixed inputs, 200 legacy and 200 new codes (lowercased), and every character
  // of Latin-1 and Latin Extended plus Unicode spaces and case-mapping oddities, at the last place of a code.
  const inputs = [
    "abcde-fgh23",
    "ABCDE FGH23",
    " a b c d e f g h 2 3 ",
    "ABCDEFGH2",
    "ABCDE-FGH2O",
    "",
    "abcde--fgh23x",
    "ZZZZZ-99999",
  ];
  for (let i = 0; i < 200; i++) inputs.push(legacyNewCode(), newCode().toLowerCase());
  const odd =
    "\u00a0\u1680\u2000\u2007\u200a\u200b\u2028\u2029\u202f\u205f\u3000\ufeff\u0131\u017f\u01c5\ufb00\uff21\u00df";
  const chars: string[] = [...odd];
  for (let c = 0; c < 0x250; c++) chars.push(String.fromCharCode(c));
  for (const ch of chars) inputs.push(`ABCDE-FGH2${ch}`, `ABCDE-FGH${ch}`, `abcde-fgh${ch}`);
  write(
    "exchange",
    "normalize-code",
    { inputs },
    "json",
    JSON.stringify(
      inputs.map((s) => legacyNormalize(s) ?? null),
      null,
      2,
    ) + "\n",
  );
  // The codes the legacy normalizer leaves unchanged: five and five of these characters around a dash (every
  // UTF-16 unit probed as a code made of it alone). A code the new core makes must be one of them.
  let identity = "";
  for (let c = 0; c < 0x10000; c++) {
    const ch = String.fromCharCode(c);
    const code = `${ch.repeat(5)}-${ch.repeat(5)}`;
    if (legacyNormalize(code) === code) identity += ch;
  }
  write("exchange", "code-alphabet", undefined, "json", JSON.stringify({ identity }, null, 2) + "\n");
}

// ---- queue: component/delivery.ts updateId (test/unit/queue-registry.test.ts)

function captureQueue(): void {
  const e = { kind: "card", subject: "alice@example.com", seq: 42 };
  write("queue", "update-id", e, "txt", updateId(e));
}

async function main(): Promise<void> {
  const realNow = Date.now;
  Date.now = () => CLOCK;
  try {
    captureCards();
    await captureCommands();
    await captureExchange();
    captureQueue();
  } finally {
    Date.now = realNow;
    for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
  }
  process.stdout.write(`legacy goldens written to ${out}\n`);
}

await main();

/**
 * Benchmark: IQ round trips per second from one real @xmpp/client through one real Prosody, to three answerers:
 *
 *   cardlink_ping   XEP-0199 ping to the component domain: client → Prosody → cardlink (a child process, its
 *                   own event loop) → Prosody → client. What every cardlink request pays before feature work.
 *   cardlink_card   <card xmlns='urn:cardlink:0'/> get of the client's own card (FN, N, EMAIL, TEL: the fields
 *                   prosody_vcard stores): the ping's path plus a SQLite read and a vCard4 rendering.
 *   cardlink_card_held
 *                   <card owner='…'/> get of a card the client holds through a binding whose owner shares only
 *                   some fields: adds the share lookup and the policy filter (and hashing the filtered copy).
 *   prosody_vcard   vcard-temp get to the client's own bare JID, answered inside Prosody by mod_vcard_legacy
 *                   from the PEP vCard4 node (a vCard is stored first, so the reply carries data).
 *   prosody_ping    XEP-0199 ping to the server domain, answered by mod_ping: Prosody's cheapest reply, the
 *                   c2s floor every request pays.
 *
 * Each with 1 and 100 requests in flight (a window: every reply releases the next request until the total is
 * sent), in rounds that alternate the cases, on the same Prosody and the same client connection. Prosody logs
 * at warn (the test harness runs it at debug, which costs it more than routing does); cardlink logs at warn.
 *
 *   node dist/bench/iq.js [--requests N] [--rounds R] [--prosody-debug] [--only case,case…]
 *                         [--cardlink-cpu-prof DIR]
 *     → one JSON object on stdout; run from the repository root (the harness resolves its files from there)
 *
 * --only runs just the named cases (ratios whose two sides did not both run are left out). --cardlink-cpu-prof
 * runs the cardlink child under `node --cpu-prof` and writes its .cpuprofile into DIR when it stops; read it
 * with `node dist/bench/cpu-prof.js DIR` (top self-time functions).
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { client, xml, type Client } from "@xmpp/client";
import type { Element } from "@xmpp/xml";
import { generateProsodyConfig } from "../scripts/prosody-config.js";
import { CardlinkProcess } from "../test/harness/cardlink.js";
import { freePort, sleep } from "../test/harness/ports.js";
import { ProsodyServer } from "../test/harness/prosody.js";
import {
  cpuDiff,
  findPid,
  isMain,
  median,
  note,
  printJson,
  procCpu,
  procMem,
  round,
  runRounds,
  systemCpu,
  type ProcCpu,
} from "./lib.js";

export interface IqBenchOptions {
  /** Requests per run with 100 in flight; runs with 1 in flight send a tenth of it (default 20,000). */
  requests?: number;
  rounds?: number;
  /** Also time xmpp.js's own iqCaller against this benchmark's sender on one case (default true). */
  senderCheck?: boolean;
  /** Prosody's log level (default warn); debug is what the test harness uses, for comparison. */
  prosodyLog?: "warn" | "debug";
  /** Only these cases (default: all). */
  only?: readonly Target[];
  /** Profile the cardlink child (node --cpu-prof) into this directory. */
  cardlinkCpuProf?: string;
}

const NS_PING = "urn:xmpp:ping";
const NS_VCARD = "vcard-temp";
const NS_CARDLINK = "urn:cardlink:0";
const NS_VCARD4 = "urn:ietf:params:xml:ns:vcard-4.0";
const USER = "bench";
const PASSWORD = "bench-pw";
const FN = "Bench Mark";
/** The owner of the held card: bound to USER by an exchange code, sharing only some fields with them. */
const OWNER = "benchowner"; // no "-": Prosody would store it as %2d, and createUsers writes plain names
const OWNER_FN = "Owen Held";
const NS_SM = "urn:xmpp:sm:3";
/**
 * xmpp.js (0.14) asks the server to acknowledge (XEP-0198 <r/>) only after 250 ms without sending, so under
 * continuous load its queue of unacknowledged stanzas grows without bound, and acknowledging it later costs
 * O(n²) (Array.shift on a huge array): 18 s inside stop() after one ~150k-stanza run. The sender asks every
 * ACK_EVERY requests instead, as a client that sends steadily should; one stanza each way per thousand.
 */
const ACK_EVERY = 1000;
/** A run with no reply for this long has lost requests (or a process died): fail instead of hanging. */
const STALL_MS = 20_000;

/** In the order the results read: cardlink's floor, its own card, a held card, then Prosody's two anchors. */
export const TARGETS = [
  "cardlink_ping",
  "cardlink_card",
  "cardlink_card_held",
  "prosody_vcard",
  "prosody_ping",
] as const;
export type Target = (typeof TARGETS)[number];
const WINDOWS = [1, 100] as const;
type Window = (typeof WINDOWS)[number];
type CaseKey = `${Target}:w${Window}`;
/** Window sizes before targets: the targets' runs of one window follow each other within a round. */
function caseMap(targets: readonly Target[]): Map<CaseKey, { target: Target; window: Window }> {
  return new Map(
    WINDOWS.flatMap((window) =>
      targets.map((target) => [`${target}:w${window}` as CaseKey, { target, window }] as const),
    ),
  );
}

interface TargetSpec {
  /** The JID the request goes to, and that the reply must come from (matched with the id, as Prosody does). */
  to: string;
  /** Replies from the user's own account carry no 'from' (RFC 6120 8.1.2.1): Prosody leaves it out. */
  fromOmitted?: boolean;
  payload: () => Element;
  /** Why the reply is not the expected one, or null when it is. */
  check: (reply: Element) => string | null;
}

interface IqCallerLike {
  request(stanza: Element, timeoutMs?: number): Promise<Element>;
}
/** Parts of the xmpp.js client that types/xmpp.d.ts does not declare (it declares what cardlink uses). */
export type FullClient = Client & {
  iqCaller: IqCallerLike;
  iqCallee: {
    set(ns: string, name: string, handler: (ctx: { element: Element }) => boolean): void;
  };
  streamManagement?: { enabled: boolean; outbound_q?: unknown[] };
};

const isResult = (reply: Element): string | null =>
  reply.attrs.type === "result"
    ? null
    : `type=${String(reply.attrs.type)}: ${reply.toString().slice(0, 300)}`;

/** A cardlink <card/> result whose vCard4 carries `fn`. */
function cardCheck(fn: string): (reply: Element) => string | null {
  return (reply) => {
    const problem = isResult(reply);
    if (problem) return problem;
    const got = reply
      .getChild("card", NS_CARDLINK)
      ?.getChild("vcard", NS_VCARD4)
      ?.getChild("fn")
      ?.getChildText("text");
    return got === fn ? null : `card fn=${String(got)}, expected ${fn}`;
  };
}

function targetSpecs(
  host: string,
  componentDomain: string,
  bareJid: string,
  ownerJid: string,
): Record<Target, TargetSpec> {
  const ping = (): Element => xml("ping", { xmlns: NS_PING });
  return {
    cardlink_ping: { to: componentDomain, payload: ping, check: isResult },
    cardlink_card: {
      to: componentDomain,
      payload: () => xml("card", { xmlns: NS_CARDLINK }),
      check: cardCheck(FN),
    },
    cardlink_card_held: {
      to: componentDomain,
      payload: () => xml("card", { xmlns: NS_CARDLINK, owner: ownerJid }),
      check: cardCheck(OWNER_FN),
    },
    prosody_vcard: {
      to: bareJid,
      fromOmitted: true,
      payload: () => xml("vCard", { xmlns: NS_VCARD }),
      check: (reply) => {
        const problem = isResult(reply);
        if (problem) return problem;
        // An empty <vCard/> would also be a result: insist on the stored data so the lookup really happened.
        const fn = reply.getChild("vCard", NS_VCARD)?.getChildText("FN");
        return fn === FN ? null : `vCard FN=${String(fn)}, expected ${FN}`;
      },
    },
    prosody_ping: { to: host, payload: ping, check: isResult },
  };
}

let runSeq = 0;

function requestAck(xmpp: Client): void {
  xmpp.send(xml("r", { xmlns: NS_SM })).catch(() => undefined); // a lost <r/> shows as a stall, not here
}

/**
 * Keeps `window` requests outstanding until `total` have been answered; returns elapsed milliseconds. Replies
 * are matched by id and `from` in a 'stanza' listener: no promise, timer or map entry per request beyond one
 * Set entry, so the client adds as little as it can to what is measured.
 */
function runWindow(xmpp: FullClient, spec: TargetSpec, total: number, window: number): Promise<number> {
  // A fresh id prefix per run: a straggler from an earlier (failed) run can never count here.
  const prefix = `b${(++runSeq).toString(36)}-`;
  return new Promise((resolve, reject) => {
    const pending = new Set<string>();
    let sent = 0;
    let done = 0;
    let settled = false;
    let doneAtLastCheck = 0;
    let idleSince = performance.now();
    const t0 = performance.now();
    const finish = (err: Error | null): void => {
      if (settled) return;
      settled = true;
      xmpp.off("stanza", onStanza);
      clearInterval(watchdog);
      if (err) reject(err);
      else resolve(performance.now() - t0);
    };
    const sm = xmpp.streamManagement?.enabled === true;
    const sendOne = (): void => {
      if (sm && sent % ACK_EVERY === ACK_EVERY - 1) requestAck(xmpp);
      const id = prefix + (sent++).toString(36);
      pending.add(id);
      xmpp.send(xml("iq", { type: "get", to: spec.to, id }, spec.payload())).catch((e: unknown) => {
        finish(new Error(`send failed: ${(e as Error).message}`));
      });
    };
    const onStanza = (el: Element): void => {
      if (el.name !== "iq") return;
      const id = el.attrs.id;
      if (id === undefined || !pending.has(id)) return;
      const from = el.attrs.from;
      if (from !== spec.to && !(spec.fromOmitted && from === undefined)) return;
      pending.delete(id);
      const problem = spec.check(el);
      if (problem) {
        finish(new Error(`reply to ${spec.to}: ${problem}`));
        return;
      }
      if (++done === total) finish(null);
      else if (sent < total) sendOne();
    };
    // Checked once a second rather than per reply: a timer per reply would be measured too.
    const watchdog = setInterval(() => {
      const now = performance.now();
      if (done !== doneAtLastCheck) {
        doneAtLastCheck = done;
        idleSince = now;
      } else if (now - idleSince > STALL_MS) {
        finish(new Error(`stalled at ${done}/${total} replies from ${spec.to}`));
      }
    }, 1000);
    xmpp.on("stanza", onStanza);
    for (let i = 0; i < Math.min(window, total); i++) sendOne();
  });
}

/** The same window driven through xmpp.js's iqCaller (a promise, a timer and a map entry per request). */
async function runWindowIqCaller(
  xmpp: FullClient,
  spec: TargetSpec,
  total: number,
  window: number,
): Promise<number> {
  const prefix = `c${(++runSeq).toString(36)}-`;
  let sent = 0;
  const t0 = performance.now();
  const sm = xmpp.streamManagement?.enabled === true;
  const lane = async (): Promise<void> => {
    while (sent < total) {
      if (sm && sent % ACK_EVERY === ACK_EVERY - 1) requestAck(xmpp);
      const id = prefix + (sent++).toString(36);
      const reply = await xmpp.iqCaller.request(
        xml("iq", { type: "get", to: spec.to, id }, spec.payload()),
        STALL_MS,
      );
      const problem = spec.check(reply);
      if (problem) throw new Error(`reply to ${spec.to}: ${problem}`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(window, total) }, lane));
  return performance.now() - t0;
}

/** One IQ (its id is set here), for setup and probes; the reply, result or error; rejects on timeout. */
export async function once(xmpp: Client, iq: Element, timeoutMs = 5000): Promise<Element> {
  const id = `s${(++runSeq).toString(36)}`;
  iq.attrs.id = id;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      xmpp.off("stanza", onStanza);
      reject(new Error(`no reply to ${iq.toString().slice(0, 200)} within ${timeoutMs} ms`));
    }, timeoutMs);
    const onStanza = (el: Element): void => {
      if (el.name !== "iq" || el.attrs.id !== id) return;
      clearTimeout(timer);
      xmpp.off("stanza", onStanza);
      resolve(el);
    };
    xmpp.on("stanza", onStanza);
    xmpp.send(iq).catch((e: unknown) => {
      clearTimeout(timer);
      xmpp.off("stanza", onStanza);
      reject(e as Error);
    });
  });
}

const get = (spec: TargetSpec): Element => xml("iq", { type: "get", to: spec.to }, spec.payload());

/**
 * `onUpdates` sees every cardlink <updates/> push, each acknowledged with a result as a real client does.
 * Without it xmpp.js answers service-unavailable: cardlink then forgets the resource, the next request (any IQ
 * from a full JID proves it is online) brings it back, and the unacknowledged entries are sent again — a
 * redelivery per measured request, which is what the first version of the card cases measured.
 */
export async function connect(
  port: number,
  domain: string,
  user = USER,
  onUpdates: (updates: Element) => void = () => undefined,
): Promise<FullClient> {
  const xmpp = client({
    service: `xmpp://127.0.0.1:${port}`,
    domain,
    // As in test/harness/clients.ts: xmpp.js does not pick PLAIN on an unencrypted stream by itself, and the
    // loopback config offers only PLAIN (SCRAM's ~0.6 s of CPU per login has no place in a benchmark).
    credentials: (authenticate, mechanisms) =>
      authenticate(
        { username: user, password: PASSWORD },
        mechanisms.includes("PLAIN") ? "PLAIN" : (mechanisms[0] as string),
      ),
    resource: "bench",
  }) as FullClient;
  xmpp.reconnect.stop();
  xmpp.iqCallee.set(NS_CARDLINK, "updates", (ctx) => {
    onUpdates(ctx.element);
    return true;
  });
  xmpp.on("error", (e: Error) => note(`iq: client error: ${e.message}`));
  await xmpp.start();
  return xmpp;
}

/** A cardlink IQ for setup; throws with the reply when it is not a result. */
async function cardlinkIq(xmpp: Client, to: string, type: "get" | "set", payload: Element): Promise<Element> {
  const reply = await once(xmpp, xml("iq", { type, to }, payload));
  if (isResult(reply)) throw new Error(`setup: ${payload.name} ${type} refused: ${reply.toString()}`);
  return reply;
}

const text = (name: string, value: string): Element => xml(name, {}, xml("text", {}, value));
const typed = (name: string, type: string, valueName: string, value: string): Element =>
  xml(name, {}, xml("parameters", {}, xml("type", {}, xml("text", {}, type))), xml(valueName, {}, value));

/**
 * The cards the cardlink cases read: the client's own card with the fields prosody_vcard stores (FN, N, EMAIL,
 * TEL), and a second user's card (a few more fields) that the client holds through an exchange code, with a
 * share policy (fn, email, tel; work entries only) so the held get filters. The owner's client connects only
 * for this and leaves; neither client announces presence to cardlink, so nothing is delivered meanwhile.
 */
async function setUpCards(
  client: Client,
  port: number,
  host: string,
  comp: string,
  bareJid: string,
): Promise<void> {
  const own = xml(
    "vcard",
    { xmlns: NS_VCARD4 },
    text("fn", FN),
    xml("n", {}, xml("surname", {}, "Mark"), xml("given", {}, "Bench")),
    text("email", "bench@example.org"),
    xml("tel", {}, xml("uri", {}, "tel:+1-555-0100")),
  );
  await cardlinkIq(client, comp, "set", xml("card", { xmlns: NS_CARDLINK }, own));
  const owner = await connect(port, host, OWNER);
  try {
    const held = xml(
      "vcard",
      { xmlns: NS_VCARD4 },
      text("fn", OWNER_FN),
      xml("n", {}, xml("surname", {}, "Held"), xml("given", {}, "Owen")),
      text("org", "Example Ltd"),
      typed("email", "work", "text", "owen@example.com"),
      typed("email", "home", "text", "owen@example.net"),
      typed("tel", "work", "uri", "tel:+1-555-0101"),
      typed("tel", "cell", "uri", "tel:+1-555-0102"),
    );
    await cardlinkIq(owner, comp, "set", xml("card", { xmlns: NS_CARDLINK }, held));
    const made = await cardlinkIq(owner, comp, "set", xml("exchange-code", { xmlns: NS_CARDLINK }));
    const code = String(made.getChild("exchange-code", NS_CARDLINK)?.attrs.code);
    await cardlinkIq(client, comp, "set", xml("redeem", { xmlns: NS_CARDLINK, code }));
    await cardlinkIq(
      owner,
      comp,
      "set",
      xml(
        "share",
        { xmlns: NS_CARDLINK, holder: bareJid },
        xml("field", {}, "email"),
        xml("field", {}, "tel"),
        xml("type", {}, "work"),
      ),
    );
  } finally {
    await owner.stop().catch(() => undefined);
  }
}

/**
 * Stops cardlink gracefully, and for sure: SIGKILL if it has not exited `graceMs` after SIGTERM (longer when
 * profiling: the .cpuprofile is written on the way out, and a SIGKILL would lose it).
 */
export async function stopCardlink(cardlink: CardlinkProcess, graceMs = 5000): Promise<void> {
  const proc = cardlink.proc;
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  const timer = setTimeout(() => proc.kill("SIGKILL"), graceMs);
  await cardlink.kill("SIGTERM");
  clearTimeout(timer);
}

interface RunSample {
  perS: number;
  /** CPU microseconds per request (user + system) of each process over the run. */
  clientUs: number;
  prosodyUs: number | null;
  cardlinkUs: number | null;
  cpu: { client: ProcCpu; prosody: ProcCpu | null; cardlink: ProcCpu | null };
  wallMs: number;
  othersMs: number | null;
  stealMs: number | null;
}

function argNumber(flag: string): number | undefined {
  const i = process.argv.indexOf(flag);
  const v = i >= 0 ? Number(process.argv[i + 1]) : NaN;
  return Number.isFinite(v) && v > 0 ? v : undefined;
}

function argString(flag: string): string | undefined {
  const i = process.argv.indexOf(flag);
  const v = i >= 0 ? process.argv[i + 1] : undefined;
  if (i >= 0 && (v === undefined || v.startsWith("--"))) throw new Error(`${flag} needs a value`);
  return v;
}

/**
 * A Prosody for a benchmark, configured but not started: fastAuth (which also removes mod_limits, which would cap
 * one client at a few dozen IQs/s), free loopback ports, and the config written here at `logLevel` (the harness
 * writes its own at debug; setting the ports first makes start() keep this file). The harness resolves
 * prosody.cfg.lua and dist/component/main.js from the working directory.
 */
export async function benchProsody(logLevel: "warn" | "info" | "debug"): Promise<ProsodyServer> {
  for (const f of ["prosody.cfg.lua", "dist/component/main.js"]) {
    if (!existsSync(f)) throw new Error(`${f} not found: run from the repository root, after npm run build`);
  }
  const prosody = new ProsodyServer({ fastAuth: true });
  prosody.c2sPort = await freePort();
  prosody.componentPort = await freePort();
  writeFileSync(
    prosody.configFile,
    generateProsodyConfig({
      template: path.resolve("prosody.cfg.lua"),
      runDir: prosody.runDir,
      host: prosody.host,
      componentDomain: prosody.componentDomain,
      secret: prosody.secret,
      c2sPort: prosody.c2sPort,
      componentPort: prosody.componentPort,
      fastAuth: true,
      logLevel,
    }),
  );
  return prosody;
}

export async function run(opts: IqBenchOptions = {}): Promise<object> {
  const w100Requests = Math.max(100, Math.round(opts.requests ?? 20_000));
  const counts: Record<Window, number> = {
    1: Math.max(10, Math.round(w100Requests / 10)),
    100: w100Requests,
  };
  const rounds = Math.max(1, opts.rounds ?? 3);
  const prosodyLog = opts.prosodyLog ?? "warn";
  const targets = TARGETS.filter((t) => !opts.only || opts.only.includes(t));
  if (targets.length === 0) throw new Error(`--only names no case; cases are ${TARGETS.join(", ")}`);
  const CASES = caseMap(targets);
  const started = performance.now();
  const loadBefore = round(os.loadavg()[0] ?? 0, 2);
  const prosody = await benchProsody(prosodyLog);
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "cardlink-bench-iq-"));
  let cardlink: CardlinkProcess | null = null;
  let xmpp: FullClient | null = null;
  try {
    await prosody.start();
    prosody.createUsers([
      { user: USER, password: PASSWORD },
      { user: OWNER, password: PASSWORD },
    ]);
    const prosodyPid = findPid(prosody.configFile);

    cardlink = CardlinkProcess.forProsody(prosody, path.join(dataDir, "cardlink.sqlite"), {
      CARDLINK_LOG_LEVEL: "warn",
      CARDLINK_DATA_DIR: dataDir,
    });
    // The profile is written when cardlink exits: SIGTERM → graceful stop → process.exit (stopCardlink).
    cardlink.start(
      opts.cardlinkCpuProf ? ["--cpu-prof", `--cpu-prof-dir=${path.resolve(opts.cardlinkCpuProf)}`] : [],
    );
    const cardlinkPid = cardlink.proc?.pid;

    const pushed: Element[] = [];
    xmpp = await connect(prosody.c2sPort, prosody.host, USER, (u) => pushed.push(u));
    const client = xmpp;
    const bareJid = `${USER}@${prosody.host}`;
    const ownerJid = `${OWNER}@${prosody.host}`;
    const specs = targetSpecs(prosody.host, prosody.componentDomain, bareJid, ownerJid);

    // cardlink logs nothing at warn when it comes online: poll with pings until the component answers.
    const deadline = Date.now() + 15_000;
    for (;;) {
      const reply = await once(client, get(specs.cardlink_ping), 1000).catch(() => null);
      if (reply && isResult(reply) === null) break;
      if (Date.now() > deadline || cardlink.proc?.exitCode != null) {
        throw new Error(`cardlink did not answer pings: ${cardlink.output.slice(-2000)}`);
      }
      await sleep(100);
    }

    // mod_vcard_legacy turns a vcard-temp set into the vCard4 PEP node that the measured gets read back.
    const vcard = xml(
      "vCard",
      { xmlns: NS_VCARD },
      xml("FN", {}, FN),
      xml("N", {}, xml("FAMILY", {}, "Mark"), xml("GIVEN", {}, "Bench")),
      xml("EMAIL", {}, xml("INTERNET"), xml("USERID", {}, "bench@example.org")),
      xml("TEL", {}, xml("VOICE"), xml("NUMBER", {}, "+1 555 0100")),
    );
    const set = await once(client, xml("iq", { type: "set" }, vcard));
    if (isResult(set)) throw new Error(`vCard set refused: ${set.toString()}`);
    await setUpCards(client, prosody.c2sPort, prosody.host, prosody.componentDomain, bareJid);
    // Quiet before measuring: the filtered copy of the held card (enqueued by the share change, after the
    // binding and the unfiltered copy) has been delivered and acknowledged, so nothing is pending for the client.
    const filteredDelivered = (): boolean =>
      pushed.some((u) =>
        u.getChildren("update").some((up) => {
          const card = up.getChild("card", NS_CARDLINK);
          const v = card?.getChild("vcard", NS_VCARD4);
          return (
            up.attrs.kind === "card" && card?.attrs.owner === ownerJid && v !== undefined && !v.getChild("n")
          );
        }),
      );
    const quietBy = Date.now() + 15_000;
    while (!filteredDelivered()) {
      if (Date.now() > quietBy) throw new Error("setup: the held card's filtered copy was never delivered");
      await once(client, get(specs.cardlink_ping)); // a request from the resource: cardlink delivers to it
      await sleep(100);
    }
    for (const t of TARGETS) {
      const reply = await once(client, get(specs[t]));
      const problem = specs[t].check(reply);
      if (problem) throw new Error(`${t} probe: ${problem}`);
      // The held card must really be the filtered copy: the owner shares no N and no ORG with this holder.
      const v = reply.getChild("card", NS_CARDLINK)?.getChild("vcard", NS_VCARD4);
      if (t === "cardlink_card_held" && (v?.getChild("n") || v?.getChild("org") || !v?.getChild("tel"))) {
        throw new Error(`cardlink_card_held probe: share policy not applied: ${reply.toString()}`);
      }
    }
    const memStart = procMem(cardlinkPid);

    const measure = async (key: CaseKey, total: number): Promise<RunSample> => {
      const { target, window } = CASES.get(key) as { target: Target; window: Window };
      const c0 = process.cpuUsage();
      const p0 = procCpu(prosodyPid);
      const k0 = procCpu(cardlinkPid);
      const s0 = systemCpu();
      const ms = await runWindow(client, specs[target], total, window);
      const cDelta = process.cpuUsage(c0);
      const prosodyCpu = cpuDiff(p0, procCpu(prosodyPid));
      const cardlinkCpu = cpuDiff(k0, procCpu(cardlinkPid));
      const s1 = systemCpu();
      const perReq = (c: ProcCpu | null): number | null =>
        c ? round(((c.userMs + c.systemMs) * 1000) / total, 1) : null;
      return {
        perS: total / (ms / 1000),
        clientUs: round((cDelta.user + cDelta.system) / total, 1),
        prosodyUs: perReq(prosodyCpu),
        cardlinkUs: perReq(cardlinkCpu),
        cpu: {
          client: { userMs: cDelta.user / 1000, systemMs: cDelta.system / 1000 },
          prosody: prosodyCpu,
          cardlink: cardlinkCpu,
        },
        wallMs: ms,
        // Everything else on the machine over this run: all busy CPU minus our three processes.
        othersMs:
          s0 && s1 && prosodyCpu && cardlinkCpu
            ? Math.max(
                0,
                s1.busyMs -
                  s0.busyMs -
                  (cDelta.user + cDelta.system) / 1000 -
                  (prosodyCpu.userMs + prosodyCpu.systemMs) -
                  (cardlinkCpu.userMs + cardlinkCpu.systemMs),
              )
            : null,
        stealMs: s0 && s1 ? s1.stealMs - s0.stealMs : null,
      };
    };

    const keys = [...CASES.keys()];
    // Warm-up: JIT on both Node processes, Prosody's caches, TCP windows; not recorded.
    for (const [key, c] of CASES) await measure(key, Math.max(10, Math.round(counts[c.window] / 10)));

    const samples = await runRounds(rounds, keys, async (key, r) => {
      const s = await measure(key, counts[(CASES.get(key) as { window: Window }).window]);
      note(`iq: round ${r + 1}/${rounds} ${key}: ${Math.round(s.perS)}/s`);
      return s;
    });

    let senderCheck: object | undefined;
    if (opts.senderCheck ?? true) {
      // The same case driven both ways, alternating: what xmpp.js's iqCaller would cost the client instead.
      const spec = specs.prosody_ping;
      const n = Math.max(100, Math.round(counts[100] / 4));
      const own = { perS: [] as number[], cpuUs: [] as number[] };
      const caller = { perS: [] as number[], cpuUs: [] as number[] };
      // Client CPU per request next to the rates: it depends much less on what else the machine is doing.
      const timed = async (into: typeof own, drive: () => Promise<number>): Promise<void> => {
        const c0 = process.cpuUsage();
        const ms = await drive();
        const c = process.cpuUsage(c0);
        into.perS.push(n / (ms / 1000));
        into.cpuUs.push((c.user + c.system) / n);
      };
      for (let r = 0; r < 3; r++) {
        await timed(own, () => runWindow(client, spec, n, 100));
        await timed(caller, () => runWindowIqCaller(client, spec, n, 100));
      }
      senderCheck = {
        case: "prosody_ping:w100",
        requests: n,
        own_median_per_s: round(median(own.perS)),
        own_runs: own.perS.map((x) => round(x)),
        own_client_cpu_us_per_request: round(median(own.cpuUs), 1),
        iqcaller_median_per_s: round(median(caller.perS)),
        iqcaller_runs: caller.perS.map((x) => round(x)),
        iqcaller_client_cpu_us_per_request: round(median(caller.cpuUs), 1),
      };
    }

    const memEnd = procMem(cardlinkPid);
    const prosodyMem = procMem(prosodyPid);

    const cases = {} as Partial<Record<Target, Record<string, object>>>;
    const medians = {} as Record<CaseKey, number>;
    for (const t of targets) {
      const perWindow: Record<string, object> = {};
      cases[t] = perWindow;
      for (const w of WINDOWS) {
        const key: CaseKey = `${t}:w${w}`;
        const runs = samples[key];
        const med = median(runs.map((s) => s.perS));
        medians[key] = med;
        const medOrNull = (xs: Array<number | null>): number | null =>
          xs.every((x): x is number => x !== null) ? round(median(xs), 1) : null;
        perWindow[`w${w}`] = {
          requests: counts[w],
          median_per_s: round(med),
          runs: runs.map((s) => round(s.perS)),
          // Per run, cores busy with other work meanwhile: a slow run next to a high value was crowded out.
          others_cores: runs.map((s) => (s.othersMs === null ? null : round(s.othersMs / s.wallMs, 2))),
          cpu_us_per_request: {
            client: round(median(runs.map((s) => s.clientUs)), 1),
            prosody: medOrNull(runs.map((s) => s.prosodyUs)),
            cardlink: medOrNull(runs.map((s) => s.cardlinkUs)),
          },
        };
      }
    }
    /** Ratio of medians per window; left out (undefined) when --only skipped either side. */
    const ratio = (a: Target, b: Target): Record<string, number> | undefined => {
      if (!targets.includes(a) || !targets.includes(b)) return undefined;
      const out: Record<string, number> = {};
      for (const w of WINDOWS) out[`w${w}`] = round(medians[`${a}:w${w}`] / medians[`${b}:w${w}`], 3);
      return out;
    };
    // CPU totals over all measured runs (warm-up, probes and the sender check excluded).
    const all = Object.values(samples).flat() as RunSample[];
    const total = (pick: (s: RunSample) => ProcCpu | null, f: keyof ProcCpu): number | null =>
      all.every((s) => pick(s) !== null)
        ? round(all.reduce((acc, s) => acc + (pick(s) as ProcCpu)[f], 0))
        : null;
    const wall = all.reduce((acc, s) => acc + s.wallMs, 0);
    const sumOrNull = (xs: Array<number | null>): number | null =>
      xs.every((x): x is number => x !== null) ? xs.reduce((a, b) => a + b, 0) : null;
    const othersMs = sumOrNull(all.map((s) => s.othersMs));
    const stealMs = sumOrNull(all.map((s) => s.stealMs));
    const streamManagement = client.streamManagement?.enabled ?? false;
    const unacked = client.streamManagement?.outbound_q?.length ?? null;

    return {
      bench: "iq",
      rounds,
      cases,
      ratio_cardlink_vs_prosody_vcard: ratio("cardlink_ping", "prosody_vcard"),
      ratio_cardlink_vs_prosody_ping: ratio("cardlink_ping", "prosody_ping"),
      ratio_cardlink_card_vs_prosody_vcard: ratio("cardlink_card", "prosody_vcard"),
      ratio_cardlink_card_held_vs_prosody_vcard: ratio("cardlink_card_held", "prosody_vcard"),
      ratio_cardlink_card_vs_cardlink_ping: ratio("cardlink_card", "cardlink_ping"),
      cpu: {
        cardlink_user_ms: total((s) => s.cpu.cardlink, "userMs"),
        cardlink_system_ms: total((s) => s.cpu.cardlink, "systemMs"),
        prosody_user_ms: total((s) => s.cpu.prosody, "userMs"),
        prosody_system_ms: total((s) => s.cpu.prosody, "systemMs"),
        client_user_ms: total((s) => s.cpu.client, "userMs"),
        client_system_ms: total((s) => s.cpu.client, "systemMs"),
        measured_wall_ms: round(wall),
        // Average cores busy with other work during the measured runs (of 2): the noise level of this run.
        others_cores_avg: othersMs === null ? null : round(othersMs / wall, 2),
        steal_ms: stealMs === null ? null : round(stealMs),
      },
      memory: {
        cardlink_rss_mb_after_start: memStart?.rssMb ?? null,
        cardlink_rss_mb_end: memEnd?.rssMb ?? null,
        cardlink_peak_rss_mb: memEnd?.peakRssMb ?? null,
        prosody_rss_mb_end: prosodyMem?.rssMb ?? null,
      },
      ...(senderCheck ? { sender_check: senderCheck } : {}),
      setup: {
        client: "@xmpp/client 0.14, one connection, own IQ sender",
        stream_management: streamManagement,
        client_unacked_at_end: unacked,
        prosody_log: prosodyLog,
        cardlink: "child process, log warn, SQLite",
        cases: targets,
        cardlink_cpu_prof: opts.cardlinkCpuProf ? path.resolve(opts.cardlinkCpuProf) : null,
        node: process.version,
        cpus: os.cpus().length,
        // Other work on the machine shows here: on 2 cores anything else running skews the numbers.
        loadavg_1m_before: loadBefore,
        loadavg_1m_after: round(os.loadavg()[0] ?? 0, 2),
      },
      duration_s: round((performance.now() - started) / 1000, 1),
    };
  } finally {
    // Every step guarded on its own: a failure in one must not leave a Prosody or cardlink running.
    if (xmpp) await xmpp.stop().catch(() => undefined);
    if (cardlink) await stopCardlink(cardlink, opts.cardlinkCpuProf ? 60_000 : 5000).catch(() => undefined);
    if (opts.cardlinkCpuProf) note(`iq: cardlink CPU profile in ${path.resolve(opts.cardlinkCpuProf)}`);
    await prosody.stop().catch(() => undefined);
    prosody.cleanup();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) {
  try {
    const requests = argNumber("--requests");
    const rounds = argNumber("--rounds");
    const debug = process.argv.includes("--prosody-debug");
    const only = argString("--only")
      ?.split(",")
      .map((x) => x.trim());
    const unknown = only?.filter((x) => !(TARGETS as readonly string[]).includes(x)) ?? [];
    if (unknown.length > 0)
      throw new Error(`--only: unknown case(s) ${unknown.join(", ")}; cases are ${TARGETS.join(", ")}`);
    const prof = argString("--cardlink-cpu-prof");
    printJson(
      await run({
        ...(requests ? { requests } : {}),
        ...(rounds ? { rounds } : {}),
        ...(debug ? { prosodyLog: "debug" } : {}),
        ...(only ? { only: only as Target[] } : {}),
        ...(prof ? { cardlinkCpuProf: prof } : {}),
      }),
    );
  } catch (e) {
    process.stderr.write(`bench iq: ${(e as Error).stack ?? String(e)}\n`);
    process.exitCode = 1;
  }
}

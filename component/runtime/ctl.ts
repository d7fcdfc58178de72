/**
 * The `cardlink` command (prosodyctl's spirit): run the service, check a configuration against the real server,
 * migrate, back up, and summarize the database. Exit status (docs/OPERATIONS.md §2): 0 success; 1 the operation
 * failed or a check found a problem outside the configuration (server unreachable, handshake refused, database
 * newer than this build); 2 a usage error or a configuration error (the file, a value, push credentials), which a
 * restart cannot fix (systemd: RestartPreventExitStatus=2).
 */
import { accessSync, chmodSync, constants, existsSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline/promises";
import { parseArgs } from "node:util";
import { StanzaError } from "../../stanzas/errors.js";
import { createSenders, PushConfigError } from "../../push/senders.js";
import { openReadOnly, type Db } from "../../storage/sqlite/db.js";
import { createCardlink } from "./app.js";
import { ConfigError, loadConfig, type Config } from "./config.js";
import { probeHandshake } from "./connection.js";
import {
  adminRepo,
  coreModules,
  overrideMove,
  buildExport,
  deleteAccount,
  isEmptyExport,
  moduleMigrations,
  userDataWiring,
} from "../features.js";
import { coreMigrations, openStore } from "../../storage/index.js";
import type { Migration, Store } from "../../storage/store.js";
import type { SqliteStore } from "../../storage/sqlite/store.js";
import { offlineCore } from "./offline.js";
import { deadLetterList } from "./inspect.js";
import { jobsRepo } from "./queue/jobs-repo.js";
import { parseBareUserJid } from "./jid.js";
import { createLogger, type Logger } from "./log.js";
import { SOFTWARE } from "./service.js";

export const USAGE = `usage: cardlink [command] [options]

commands:
  run                  start the service (the default)
  check-config         check the configuration, push credentials, database schema and the
                       component handshake with the XMPP server; exit 0 if all is well
  migrate [--dry-run]  apply pending schema migrations (backing the database up first);
                       --dry-run lists them and changes nothing
  backup FILE          write a consistent copy of the database to FILE (safe while running)
  stats [--json]       summary of the database: users, bindings, outbox and push queues
  export-user JID [-o FILE]
                       everything stored about JID as JSON (with its card and book as .vcf) on
                       stdout, or in FILE (created, never overwritten)
  delete-user JID [--yes]
                       delete everything stored about JID in one transaction; its holders get
                       unbind notices (delivered when each comes online); asks for the JID on a
                       terminal, needs --yes otherwise
  move-identifier JID --kind tel|email --from OLD --to NEW
                       operator override of a phone number or e-mail move: for a user who
                       cannot receive the old number's code; NEW must be one of JID's proven
                       identifiers; OLD is held for identity.cooldownSeconds
  dead-letters [--channel NAME] [--json]
                       jobs that were given up (webhooks refused or out of attempts), oldest
                       first, with their last error
  replay-dead-letter ID|all [--channel NAME]
                       put a dead letter (or all of them, of one channel with --channel) back
                       in its queue with the same idempotency id; the service sends it within
                       queue.pollMs
  help                 this text

options:
  -c, --config FILE    configuration file (default: $CARDLINK_CONFIG; the environment overrides it)
  -h, --help           this text
  -V, --version        print the version

exit status: 0 ok, 1 failed or a check found a problem, 2 usage or configuration error
`;

export interface Io {
  out(line: string): void;
  err(line: string): void;
  /** Asks a question on a terminal; undefined when there is none to ask on (stdin is not a TTY). */
  ask?(question: string): Promise<string | undefined>;
}

const stdio: Io = {
  out: (l) => process.stdout.write(l + "\n"),
  err: (l) => process.stderr.write(l + "\n"),
  ask: async (q) => {
    if (!process.stdin.isTTY) return undefined;
    const rl = createInterface({ input: process.stdin, output: process.stderr });
    try {
      return await rl.question(q);
    } finally {
      rl.close();
    }
  },
};

/** Which options each command takes: anything else is a usage error, never silently ignored. */
const COMMANDS: Record<string, { options: string[]; args: number }> = {
  run: { options: ["config"], args: 0 },
  "check-config": { options: ["config"], args: 0 },
  migrate: { options: ["config", "dry-run"], args: 0 },
  backup: { options: ["config"], args: 1 },
  stats: { options: ["config", "json"], args: 0 },
  "export-user": { options: ["config", "output"], args: 1 },
  "delete-user": { options: ["config", "yes"], args: 1 },
  "move-identifier": { options: ["config", "kind", "from", "to"], args: 1 },
  "dead-letters": { options: ["config", "channel", "json"], args: 0 },
  "replay-dead-letter": { options: ["config", "channel"], args: 1 },
  help: { options: [], args: 0 },
};

class UsageError extends Error {}

/** "running" when `run` started the service (the process then lives until a signal), else the exit status. */
export async function cli(argv: string[], io: Io = stdio): Promise<number | "running"> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        config: { type: "string", short: "c" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "V" },
        "dry-run": { type: "boolean" },
        json: { type: "boolean" },
        output: { type: "string", short: "o" },
        yes: { type: "boolean" },
        channel: { type: "string" },
        kind: { type: "string" },
        from: { type: "string" },
        to: { type: "string" },
      },
    });
  } catch (e) {
    // parseArgs adds a hint about '--' that reads as noise here: its first sentence names the problem.
    return usage(io, ((e as Error).message.split(". ")[0] as string).replace(/\.$/, ""));
  }
  const { values, positionals } = parsed;
  if (values.version) {
    io.out(`${SOFTWARE.name} ${SOFTWARE.version}`);
    return 0;
  }
  const command = positionals[0] ?? "run";
  const spec = COMMANDS[command];
  if (!spec) return usage(io, `unknown command '${command}'`);
  if (values.help || command === "help") {
    io.out(USAGE.trimEnd());
    return 0;
  }
  const args = positionals.slice(1);
  try {
    for (const k of Object.keys(values)) {
      if (values[k as keyof typeof values] !== undefined && !spec.options.includes(k))
        throw new UsageError(`'${command}' takes no --${k}`);
    }
    if (args.length !== spec.args) {
      throw new UsageError(
        spec.args === 0 ? `'${command}' takes no arguments` : `'${command}' needs ${spec.args} argument(s)`,
      );
    }
    if ((command === "export-user" || command === "delete-user") && !parseBareUserJid(args[0] as string))
      throw new UsageError(`'${args[0] as string}' is not a bare user JID (user@host)`);
    if (command === "move-identifier") {
      if (!parseBareUserJid(args[0] as string))
        throw new UsageError(`'${args[0] as string}' is not a bare user JID (user@host)`);
      if (values.kind !== "tel" && values.kind !== "email")
        throw new UsageError("'move-identifier' needs --kind tel or --kind email");
      if (!values.from || !values.to) throw new UsageError("'move-identifier' needs --from OLD and --to NEW");
    }
    if (command === "replay-dead-letter") {
      const a = args[0] as string;
      if (a !== "all" && !/^[1-9][0-9]{0,15}$/.test(a))
        throw new UsageError(`'${a}' is not a dead letter id (a number) or 'all'`);
      if (a === "all" && values.channel === undefined)
        throw new UsageError("'replay-dead-letter all' needs --channel NAME");
    }
  } catch (e) {
    return usage(io, (e as Error).message);
  }
  const source = values.config ? { file: values.config } : {};
  switch (command) {
    case "run":
      return run(source, io);
    case "check-config":
      return checkConfig(source, io);
    case "migrate":
      return withConfig(source, io, (c) => migrateCommand(c, values["dry-run"] === true, io));
    case "backup":
      return withConfig(source, io, (c) => backupCommand(c, args[0] as string, io));
    case "export-user":
      return withConfig(source, io, (c) =>
        exportUserCommand(c, parseBareUserJid(args[0] as string) as string, values.output, io),
      );
    case "delete-user":
      return withConfig(source, io, (c) =>
        deleteUserCommand(c, parseBareUserJid(args[0] as string) as string, values.yes === true, io),
      );
    case "move-identifier":
      return withConfig(source, io, (c) =>
        moveIdentifierCommand(
          c,
          parseBareUserJid(args[0] as string) as string,
          values.kind as "tel" | "email",
          values.from as string,
          values.to as string,
          io,
        ),
      );
    case "dead-letters":
      return withConfig(source, io, (c) => deadLettersCommand(c, values.channel, values.json === true, io));
    case "replay-dead-letter":
      return withConfig(source, io, (c) => replayCommand(c, args[0] as string, values.channel, io));
    default:
      return withConfig(source, io, (c) => statsCommand(c, values.json === true, io));
  }
}

function usage(io: Io, problem: string): number {
  io.err(`cardlink: ${problem}`);
  io.err(USAGE.trimEnd());
  return 2;
}

type Source = { file?: string };

/** A bad setting, from the config loader or from a push provider's credentials: one line, exit status 2. */
function isConfigError(e: unknown): e is Error {
  return e instanceof ConfigError || e instanceof PushConfigError;
}

function configError(io: Io, e: unknown): number {
  if (isConfigError(e)) {
    io.err(`cardlink: configuration error: ${e.message}`);
    return 2;
  }
  io.err(`cardlink: ${(e as Error).message ?? String(e)}`);
  return 1;
}

async function withConfig(
  source: Source,
  io: Io,
  f: (c: Config) => Promise<number> | number,
): Promise<number> {
  let config: Config;
  try {
    config = loadConfig(source);
  } catch (e) {
    return configError(io, e);
  }
  try {
    return await f(config);
  } catch (e) {
    return configError(io, e);
  }
}

// ---------------------------------------------------------------------------------------------------- run

async function run(source: Source, io: Io): Promise<number | "running"> {
  let config: Config;
  try {
    config = loadConfig(source);
  } catch (e) {
    return configError(io, e);
  }
  const log = createLogger(config.log.level);
  let app;
  try {
    app = await createCardlink(config, { log, modules: coreModules, migrations: moduleMigrations() });
    await app.start();
  } catch (e) {
    // A push provider's bad credentials are a configuration error too (push/senders.ts): one line, exit 2.
    if (!isConfigError(e) && ["debug", "trace"].includes(config.log.level)) {
      io.err(String((e as Error).stack));
    }
    return configError(io, e);
  }
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ event: "signal", signal }, "signal received");
    app.stop().then(
      () => process.exit(0),
      (e: unknown) => {
        log.error({ event: "stop-failed", err: (e as Error).message }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
  // SIGHUP's default action ends the process; here it reloads what can change at run time.
  process.on("SIGHUP", () => reload(source, config, log));
  log.info(
    { event: "started", domain: config.domain, service: config.service, db: config.database.path },
    "cardlink started",
  );
  return "running";
}

const LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"];

/**
 * SIGHUP: reads the same sources again (file and environment). Only `log.level` applies at once; every other
 * changed setting is named in the log as needing a restart, and nothing else changes. A config that no longer
 * loads is logged and ignored: the running settings stay.
 */
export function reload(source: Source, running: Config, log: Logger): void {
  let next: Config;
  try {
    next = loadConfig(source);
  } catch (e) {
    log.error(
      { event: "reload-failed", err: (e as Error).message },
      "SIGHUP: configuration not reloaded; keeping the running settings",
    );
    return;
  }
  const from = log.level;
  const to = next.log.level;
  const restartRequired = diff(running, next).filter((k) => k !== "log.level");
  const report = (): void => {
    log.info(
      { event: "reloaded", changed: from === to ? {} : { "log.level": { from, to } }, restartRequired },
      "SIGHUP: configuration reloaded",
    );
  };
  // Logged at whichever of the two levels shows more, so the line is seen when either would show it.
  if (LEVELS.indexOf(to) < LEVELS.indexOf(from)) {
    log.level = to;
    report();
  } else {
    report();
    log.level = to;
  }
}

/** Dotted keys whose values differ (arrays compared whole). */
function diff(a: unknown, b: unknown, at = ""): string[] {
  const isObj = (v: unknown): v is Record<string, unknown> =>
    typeof v === "object" && v !== null && !Array.isArray(v);
  if (isObj(a) && isObj(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...keys].flatMap((k) => diff(a[k], b[k], at ? `${at}.${k}` : k));
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [at];
}

// ------------------------------------------------------------------------------------------- check-config

async function checkConfig(source: Source, io: Io): Promise<number> {
  let config: Config;
  try {
    config = loadConfig(source);
  } catch (e) {
    return configError(io, e);
  }
  let status = 0;
  const ok = (what: string): void => io.out(`ok: ${what}`);
  const note = (what: string): void => io.out(`note: ${what}`);
  const problem = (code: 1 | 2, what: string): void => {
    io.err(`problem: ${what}`);
    status = Math.max(status, code);
  };
  ok(
    `configuration${source.file ? ` ${source.file}` : ""} (domain ${config.domain}, service ${config.service})`,
  );

  // Push: constructing the providers loads and checks the credentials (no request is sent).
  if (!config.push.apns && !config.push.fcm) note("push: no provider configured (push.apns, push.fcm)");
  try {
    const senders = createSenders(config.push);
    for (const s of Object.values(senders)) {
      ok(`push: ${s.platform === "ios" ? "APNs" : "FCM"} credentials load`);
      await s.close();
    }
  } catch (e) {
    problem(2, isConfigError(e) ? e.message : `push: ${(e as Error).message}`);
  }

  await checkDatabase(config, ok, note, problem);

  const probe = await probeHandshake({
    service: config.service,
    domain: config.domain,
    secret: config.secret,
    timeoutMs: 10_000,
  });
  if (probe.ok) ok(`handshake with ${config.service} as ${config.domain}`);
  else problem(1, `handshake with ${config.service} as ${config.domain} failed: ${probe.message}`);
  return status;
}

async function checkDatabase(
  config: Config,
  ok: (s: string) => void,
  note: (s: string) => void,
  problem: (code: 1 | 2, s: string) => void,
): Promise<void> {
  const name = databaseName(config);
  if (config.database.driver === "sqlite" && !existsSync(config.database.path)) {
    // The first start creates it: check that it can.
    let dir = path.dirname(path.resolve(name));
    while (!existsSync(dir)) dir = path.dirname(dir);
    try {
      accessSync(dir, constants.W_OK);
      note(`database ${name} does not exist yet; the first start creates it`);
    } catch {
      problem(1, `database ${name} does not exist and ${dir} is not writable`);
    }
    return;
  }
  let store: Store | undefined;
  try {
    store = await openStore(config.database, { log: createLogger("silent") });
    const s = await schemaPlan(store);
    if (s.newer) {
      problem(1, `database ${name} is at schema ${s.version}, newer than this cardlink (${s.newest})`);
    } else if (s.pending.length > 0) {
      note(
        `database ${name} is at schema ${s.version}; ${s.pending.length} migration(s) pending ` +
          `(${s.pending.map((m) => m.version).join(", ")}): \`cardlink migrate\` or the next start applies them`,
      );
    } else ok(`database ${name} at schema ${s.version}`);
  } catch (e) {
    problem(1, `database ${name} cannot be read: ${(e as Error).message}`);
  } finally {
    await store?.close();
  }
}

/** Where a database stands against what `cardlink run` would apply to it (read only: a dry run). */
interface SchemaPlan {
  /** The highest version recorded, 0 when none. */
  version: number;
  /** The highest version this cardlink knows. */
  newest: number;
  /** Migrations a start (or `cardlink migrate`) would apply, in order. */
  pending: Migration[];
  /** The database was migrated by a newer cardlink: this one must not touch it. */
  newer: boolean;
  /** The list those were taken from (the store's core migrations and the modules'). */
  all: Migration[];
}

/**
 * The plan of the migrations `cardlink run` applies at start (storage/index.ts openCoreStore: the legacy
 * versions and the rekey for an old database, the fresh 2000 DDL for a new one, then the modules'), without
 * applying any. A store with no schema at all stands for a database that does not exist yet.
 */
async function schemaPlan(store: Pick<Store, "schemaVersion" | "migrate">): Promise<SchemaPlan> {
  const version = await store.schemaVersion();
  const all = await coreMigrations(store, moduleMigrations());
  const newest = Math.max(0, ...all.map((m) => m.version));
  if (version > newest) return { version, newest, pending: [], newer: true, all };
  const r = await store.migrate(all, { dryRun: true });
  // In the order they apply (by version), not the module list's order.
  const pending = all.filter((m) => r.pending.includes(m.version)).sort((a, b) => a.version - b.version);
  return { version, newest, pending, newer: false, all };
}

// ------------------------------------------------------------------------------------------------ migrate

async function migrateCommand(config: Config, dryRun: boolean, io: Io): Promise<number> {
  const name = databaseName(config);
  const sqlite = config.database.driver === "sqlite";
  const existed = !sqlite || existsSync(config.database.path);
  if (dryRun && !existed) {
    // Nothing is created by a dry run: a new database gets the fresh schema.
    io.out(`database ${name} does not exist; migrate would create it with every migration:`);
    const s = await schemaPlan({
      schemaVersion: async () => 0,
      migrate: async (ms) => ({ applied: [], current: 0, pending: ms.map((m) => m.version) }),
    });
    for (const m of s.pending) io.out(`would apply ${m.version} ${m.name}`);
    return 0;
  }
  const store = await openStore(config.database, { log: createLogger("silent") });
  try {
    const s = await schemaPlan(store);
    if (s.newer) {
      io.err(
        `cardlink: database schema ${s.version} is newer than this cardlink (${s.newest})` +
          (dryRun ? "" : "; not touched"),
      );
      return 1;
    }
    if (dryRun) {
      io.out(`database ${name} is at schema ${s.version} (this cardlink: ${s.newest})`);
      if (s.pending.length === 0) io.out("nothing to apply");
      for (const m of s.pending) io.out(`would apply ${m.version} ${m.name}`);
      return 0;
    }
    if (s.pending.length === 0) {
      io.out(`database ${name} is at schema ${s.version}: nothing to apply`);
      return 0;
    }
    if (sqlite && existed && s.version > 0) {
      const copy = `${name}.pre-${s.newest}-${new Date().toISOString().replace(/[:.]/g, "-")}.sqlite`;
      await backupTo((store as SqliteStore).db, copy);
      io.out(`backed up ${name} to ${copy}`);
    }
    const r = await store.migrate(s.all);
    io.out(`applied ${r.applied.join(", ")}; database ${name} is at schema ${r.current}`);
    return 0;
  } finally {
    await store.close();
  }
}

/**
 * SQLite's online backup API: pages are copied in steps, and a write by another connection (a running
 * cardlink) restarts the copy, so the result is one consistent state. The copy holds push keys and node
 * secrets: readable by the owner only.
 */
async function backupTo(db: Db, file: string): Promise<void> {
  await db.backup(file);
  chmodSync(file, 0o600);
}

// ------------------------------------------------------------------------------------------------- backup

async function backupCommand(config: Config, target: string, io: Io): Promise<number> {
  if (config.database.driver !== "sqlite") {
    io.err("cardlink: backup copies the SQLite database file; back up PostgreSQL with pg_dump");
    return 2;
  }
  const file = config.database.path;
  if (existsSync(target)) {
    io.err(`cardlink: ${target} exists; refusing to overwrite it`);
    return 1;
  }
  if (!existsSync(file)) {
    io.err(`cardlink: database ${file} does not exist`);
    return 1;
  }
  const src = openReadOnly(file);
  try {
    await backupTo(src, target);
  } finally {
    src.close();
  }
  const copy = openReadOnly(target);
  try {
    const integrity = copy.pragma("integrity_check", { simple: true });
    if (integrity !== "ok") {
      io.err(`cardlink: the copy ${target} fails its integrity check: ${String(integrity)}`);
      return 1;
    }
    const version = copy
      .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'")
      .get()
      ? Number(
          (copy.prepare("SELECT MAX(version) AS v FROM schema_migrations").get() as { v: number | null }).v ??
            0,
        )
      : 0;
    io.out(
      `backed up ${file} to ${target} (${statSync(target).size} bytes, schema ${version}, integrity ok)`,
    );
    return 0;
  } finally {
    copy.close();
  }
}

// -------------------------------------------------------------------------------------------------- stats

export interface DatabaseStats {
  database: string;
  schema: number;
  usersWithCards: number;
  devices: Record<string, number>;
  bindings: number;
  shares: number;
  blocks: number;
  exchangeRequestsPending: number;
  exchangeCodesLive: number;
  outbox: Record<string, { entries: number; recipients: number; oldestAgeSeconds: number }>;
  pushQueue: Record<string, { notices: number; oldestAgeSeconds: number }>;
}

function printStats(s: DatabaseStats, io: Io): void {
  io.out(`database            ${s.database} (schema ${s.schema})`);
  io.out(`users with a card   ${s.usersWithCards}`);
  io.out(
    `devices             ${
      Object.entries(s.devices)
        .map(([p, n]) => `${n} ${p}`)
        .join(", ") || "0"
    }`,
  );
  io.out(`bindings            ${s.bindings} (${s.shares} shares)`);
  io.out(`blocks              ${s.blocks}`);
  io.out(
    `exchange            ${s.exchangeRequestsPending} requests pending, ${s.exchangeCodesLive} codes live`,
  );
  const kinds = Object.entries(s.outbox);
  io.out(`outbox              ${kinds.length === 0 ? "empty" : ""}`);
  for (const [k, v] of kinds) {
    io.out(
      `  ${k.padEnd(18)}${v.entries} entries for ${v.recipients} users, oldest ${age(v.oldestAgeSeconds)}`,
    );
  }
  const platforms = Object.entries(s.pushQueue);
  io.out(`push queue          ${platforms.length === 0 ? "empty" : ""}`);
  for (const [p, v] of platforms) {
    io.out(`  ${p.padEnd(18)}${v.notices} notices, oldest ${age(v.oldestAgeSeconds)}`);
  }
}

function age(seconds: number): string {
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172_800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86_400)} d`;
}

// ------------------------------------------------------------------------------- export-user, delete-user

/** delete-user's confirmation: 0 to go on, else the exit status (2 no terminal and no --yes, 1 mistyped). */
async function confirmDeletion(jid: string, yes: boolean, io: Io): Promise<number> {
  if (yes) return 0;
  const answer = await io.ask?.(`Delete everything cardlink stores about ${jid}? Type the JID to confirm: `);
  if (answer === undefined) {
    io.err(`cardlink: delete-user needs --yes when not run on a terminal; nothing deleted`);
    return 2;
  }
  if (answer.trim().toLowerCase() !== jid) {
    io.err(`cardlink: the confirmation was not ${jid}; nothing deleted`);
    return 1;
  }
  return 0;
}

/**
 * The store, for the commands that read a user's data or the whole database: it must exist and be exactly at
 * what this build would migrate it to (refused with the reason otherwise: a user's data is never read from a
 * half-known schema, and nothing is migrated behind the operator's back).
 */
async function currentStore(config: Config, io: Io): Promise<Store | undefined> {
  const name = databaseName(config);
  if (config.database.driver === "sqlite" && !existsSync(config.database.path)) {
    io.err(`cardlink: database ${name} does not exist`);
    return undefined;
  }
  // Silent: export-user writes its JSON to stdout, which a log line would corrupt.
  const store = await openStore(config.database, { log: createLogger("silent") });
  try {
    const s = await schemaPlan(store);
    if (s.newer || s.pending.length > 0) {
      io.err(
        `cardlink: database ${name} is at schema ${s.version}, this cardlink reads ${s.newest}` +
          (s.newer ? "" : ": run `cardlink migrate` first"),
      );
      await store.close();
      return undefined;
    }
    return store;
  } catch (e) {
    await store.close();
    throw e;
  }
}

const databaseName = (config: Config): string =>
  config.database.driver === "sqlite" ? config.database.path : "(postgres)";

export async function readStats(store: Store, name: string, now = Date.now()): Promise<DatabaseStats> {
  const ageOf = (t: number): number => Math.max(0, Math.round((now - t) / 1000));
  const schema = await store.schemaVersion();
  return store.read("ctl.stats", async (r) => {
    const count = async (sql: string, p: Record<string, number> = {}): Promise<number> =>
      Number((await r.get<{ n: number }>(sql, p))?.n ?? 0);
    const devices: Record<string, number> = {};
    for (const x of await r.all<{ platform: string; n: number }>(
      "SELECT platform, COUNT(*) AS n FROM devices GROUP BY platform ORDER BY platform",
    )) {
      devices[x.platform] = Number(x.n);
    }
    const q = adminRepo(r);
    const outbox: DatabaseStats["outbox"] = {};
    for (const k of await q.streamOverview()) {
      outbox[k.key] = { entries: k.entries, recipients: k.recipients, oldestAgeSeconds: ageOf(k.oldestAt) };
    }
    const pushQueue: DatabaseStats["pushQueue"] = {};
    for (const k of await q.pushOverview()) {
      pushQueue[k.key] = { notices: k.entries, oldestAgeSeconds: ageOf(k.oldestAt) };
    }
    return {
      database: name,
      schema,
      usersWithCards: await count("SELECT COUNT(*) AS n FROM cards"),
      devices,
      bindings: await count("SELECT COUNT(*) AS n FROM bindings"),
      shares: await count("SELECT COUNT(*) AS n FROM shares"),
      blocks: await count("SELECT COUNT(*) AS n FROM blocks"),
      exchangeRequestsPending: await count(
        "SELECT COUNT(*) AS n FROM exchange_requests WHERE expires_at > :now",
        {
          now,
        },
      ),
      exchangeCodesLive: await count("SELECT COUNT(*) AS n FROM exchange_codes WHERE expires_at > :now", {
        now,
      }),
      outbox,
      pushQueue,
    };
  });
}

async function deadLettersCommand(
  config: Config,
  channel: string | undefined,
  json: boolean,
  io: Io,
): Promise<number> {
  const store = await currentStore(config, io);
  if (!store) return 1;
  try {
    const list = await deadLetterList(store, channel === undefined ? {} : { channel });
    if (json) {
      io.out(JSON.stringify(list, null, 2));
      return 0;
    }
    if (list.length === 0)
      io.out(channel === undefined ? "no dead letters" : `no dead letters in ${channel}`);
    for (const d of list) {
      io.out(
        `${d.id}  ${new Date(d.diedAt).toISOString()}  ${d.channel}/${d.kind} → ${d.target}` +
          `${d.jid ? ` (${d.jid})` : ""}  ${d.attempts} attempt(s)  id ${d.uid}` +
          (d.lastError ? `\n    ${d.lastError}` : ""),
      );
    }
    return 0;
  } finally {
    await store.close();
  }
}

async function replayCommand(
  config: Config,
  which: string,
  channel: string | undefined,
  io: Io,
): Promise<number> {
  const store = await currentStore(config, io);
  if (!store) return 1;
  try {
    const r = await store.tx("ctl.replay-dead-letter", (tx) =>
      jobsRepo(tx).replayMany(
        which === "all" ? { channel: channel as string } : { ids: [Number(which)] },
        tx.now,
      ),
    );
    if (which !== "all" && r.n === 0) {
      io.err(`cardlink: no dead letter ${which}`);
      return 1;
    }
    // The running service's poll (queue.pollMs) finds the due jobs; this process has no engine to kick.
    io.out(`replayed ${r.n} dead letter(s)${r.channels.size ? ` into ${[...r.channels].join(", ")}` : ""}`);
    return 0;
  } finally {
    await store.close();
  }
}

async function statsCommand(config: Config, json: boolean, io: Io): Promise<number> {
  const store = await currentStore(config, io);
  if (!store) return 1;
  try {
    const s = await readStats(store, databaseName(config));
    if (json) {
      io.out(JSON.stringify(s, null, 2));
      return 0;
    }
    printStats(s, io);
    return 0;
  } finally {
    await store.close();
  }
}

async function exportUserCommand(
  config: Config,
  jid: string,
  output: string | undefined,
  io: Io,
): Promise<number> {
  if (output !== undefined && existsSync(output)) {
    io.err(`cardlink: ${output} exists; refusing to overwrite it`);
    return 1;
  }
  const store = await currentStore(config, io);
  if (!store) return 1;
  try {
    const core = offlineCore(store, userDataWiring());
    const doc = await buildExport(core.read, jid);
    if (isEmptyExport(doc)) {
      io.err(`cardlink: nothing is stored about ${jid}`);
      return 1;
    }
    const text = JSON.stringify(doc, null, 2);
    if (output === undefined) {
      io.out(text);
      return 0;
    }
    // The user's personal data: readable by the owner only, like backups.
    writeFileSync(output, text + "\n", { mode: 0o600, flag: "wx" });
    const rows = Object.values(doc.tables).reduce((a, t) => a + t.length, 0);
    io.out(`exported ${jid} to ${output} (${rows} rows, ${doc.vcf.book.length} held cards)`);
    return 0;
  } finally {
    await store.close();
  }
}

/**
 * The order in which the legacy `delete-user` listed its tables (storage/sqlite/userdata.ts deleted them in this
 * order), with each 2000 table in its old counterpart's place (outbox → stream_entries, push_queue → jobs,
 * push_sent → push_sends) and the tables the old schema lacked after them: the summary reads as before the switch
 * (the 2000 deletion counts in export order, which puts the accounts part's tables first).
 */
const SUMMARY_ORDER = [
  "stream_entries",
  "shares",
  "bindings",
  "tombstones",
  "cards",
  "blocks",
  "exchange_requests",
  "exchange_codes",
  "push_nodes",
  "jobs",
  "push_sends",
  "devices",
  "resources",
  "subscribers",
  "stream_cursors",
  "dead_letters",
  "identifiers",
  "accounts",
];
const summaryRank = (t: string): number => {
  const i = SUMMARY_ORDER.indexOf(t);
  return i < 0 ? SUMMARY_ORDER.length : i;
};

/** `move-identifier`: the operator override of a phone/e-mail move (PROTOCOL §23.4), on the database alone. */
async function moveIdentifierCommand(
  config: Config,
  jid: string,
  kind: "tel" | "email",
  from: string,
  to: string,
  io: Io,
): Promise<number> {
  const store = await currentStore(config, io);
  if (!store) return 1;
  try {
    const core = offlineCore(store, userDataWiring());
    const m = await overrideMove(core.uow, config.identity.cooldownSeconds, jid, kind, from, to);
    io.out(
      `moved ${jid}'s ${kind} ${m.from} to ${m.to}; ${m.from} is held for ${config.identity.cooldownSeconds} s`,
    );
    return 0;
  } catch (e) {
    if (!(e instanceof StanzaError)) throw e;
    io.err(`cardlink: ${e.message}; nothing changed`);
    return 1;
  } finally {
    await store.close();
  }
}

async function deleteUserCommand(config: Config, jid: string, yes: boolean, io: Io): Promise<number> {
  const confirmed = await confirmDeletion(jid, yes, io);
  if (confirmed !== 0) return confirmed;
  const store = await currentStore(config, io);
  if (!store) return 1;
  try {
    const core = offlineCore(store, userDataWiring());
    const r = await deleteAccount(core.uow, jid);
    if (r.deleted === 0) {
      io.err(`cardlink: nothing is stored about ${jid}; nothing deleted`);
      return 1;
    }
    const per = Object.entries(r.rows)
      .filter(([, n]) => n > 0)
      .sort(([a], [b]) => summaryRank(a) - summaryRank(b))
      .map(([t, n]) => `${t} ${n}`)
      .join(", ");
    io.out(`deleted ${r.deleted} rows about ${jid} (${per})`);
    io.out(
      `${r.peers.length} holder(s) get an unbind notice (in the outbox: delivered when each comes online, ` +
        `by the running service or at its next start)`,
    );
    return 0;
  } finally {
    await store.close();
  }
}

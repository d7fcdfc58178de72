import { expect } from "chai";
import { readFileSync } from "node:fs";
import { describeConfig, ENV_VARS, loadConfig, type SettingInfo } from "../../component/runtime/config.js";

/**
 * docs/CONFIG.md against the config schema, both ways: every setting the schema has is documented with its
 * default (and its type, bounds, required flag and environment variable where the table has such a column), and
 * every documented setting exists with the default the schema gives it.
 */

interface DocRow {
  key: string;
  cells: Record<string, string>;
}

/** Code spans of a table cell, in order. */
const spans = (cell: string): string[] => [...cell.matchAll(/`([^`]*)`/g)].map((m) => m[1] as string);

/** The rows of every table between "## Settings" and "## Environment", with provider keys made absolute. */
function settingsRows(md: string): DocRow[] {
  const start = md.indexOf("\n## Settings");
  const end = md.indexOf("\n## Environment");
  if (start < 0 || end < start) throw new Error("CONFIG.md: no '## Settings' … '## Environment' section");
  const rows: DocRow[] = [];
  let prefix = "";
  let header: string[] | undefined;
  for (const line of md.slice(start, end).split("\n")) {
    const heading = /^#{2,4} (.*)$/.exec(line);
    if (heading) {
      // "#### `push.apns` (…)": the table below names keys relative to it.
      const m = /^`(push\.(?:apns|fcm))`/.exec(heading[1] as string);
      prefix = m ? `${m[1]}.` : "";
      header = undefined;
      continue;
    }
    if (!line.startsWith("|")) {
      header = undefined;
      continue;
    }
    const cells = line
      .slice(1, line.endsWith("|") ? -1 : undefined)
      .split(/(?<!\\)\|/)
      .map((c) => c.trim());
    if (!header) {
      header = cells.map((c) => c.toLowerCase());
      continue;
    }
    if (cells.every((c) => /^-+$/.test(c))) continue;
    const byColumn: Record<string, string> = {};
    header.forEach((h, i) => (byColumn[h] = cells[i] ?? ""));
    for (const k of spans(cells[0] ?? "")) rows.push({ key: prefix + k, cells: byColumn });
  }
  return rows;
}

/** A default cell: its leading code span as JSON (or as text), or undefined when it names no value. */
function docDefault(cell: string): unknown {
  if (!cell.startsWith("`")) return undefined;
  const text = spans(cell)[0] as string;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/** Every disagreement between the document and the schema; [] when they agree. */
function compare(md: string, schema: SettingInfo[]): string[] {
  const problems: string[] = [];
  const rows = settingsRows(md);
  const docs = new Map<string, DocRow>();
  for (const r of rows) {
    if (docs.has(r.key)) problems.push(`${r.key}: documented twice`);
    docs.set(r.key, r);
  }
  const known = new Map(schema.map((s) => [s.key, s]));
  for (const key of docs.keys()) if (!known.has(key)) problems.push(`${key}: documented, not in the schema`);
  for (const s of schema) {
    const row = docs.get(s.key);
    if (!row) {
      problems.push(`${s.key}: in the schema, not documented`);
      continue;
    }
    const c = row.cells;
    const documented = docDefault(c.default ?? "");
    if (JSON.stringify(documented) !== JSON.stringify(s.default)) {
      problems.push(
        `${s.key}: default ${JSON.stringify(s.default)}, documented ${JSON.stringify(documented)}`,
      );
    }
    if (c.type !== undefined && c.type !== s.type)
      problems.push(`${s.key}: type ${s.type}, documented ${c.type}`);
    if (s.min !== undefined && s.max !== undefined) {
      const allowed = c.allowed ?? "";
      if (!allowed.includes(`${s.min}–${s.max}`)) {
        problems.push(`${s.key}: bounds ${s.min}–${s.max}, documented '${allowed}'`);
      }
    }
    if (c.required !== undefined && c.required.startsWith("**yes**") !== s.required) {
      problems.push(`${s.key}: required ${s.required}, documented '${c.required}'`);
    }
    const env = ENV_VARS.find((e) => e.key === s.key);
    if (c.env !== undefined && (c.env === "" ? env !== undefined : !c.env.includes(`\`${env?.name}\``))) {
      problems.push(`${s.key}: environment ${env?.name ?? "none"}, documented '${c.env}'`);
    }
  }
  // The "Environment" table, both ways.
  const envSection = md.slice(md.indexOf("\n## Environment"), md.indexOf("\n## Matching Prosody"));
  const envRows = new Map<string, string>();
  for (const m of envSection.matchAll(/^\| `([A-Z_]+)` \| (.*) \|$/gm))
    envRows.set(m[1] as string, m[2] as string);
  for (const e of ENV_VARS) {
    const sets = envRows.get(e.name);
    if (sets === undefined || spans(sets)[0] !== e.key) {
      problems.push(`${e.name}: sets ${e.key}, documented '${sets ?? "(missing)"}'`);
    }
  }
  const extra = ["CARDLINK_CONFIG", "STATE_DIRECTORY"];
  for (const name of envRows.keys()) {
    if (!extra.includes(name) && !ENV_VARS.some((e) => e.name === name)) {
      problems.push(`${name}: documented, read by nobody`);
    }
  }
  return problems;
}

describe("docs/CONFIG.md against the config schema", () => {
  const md = readFileSync("docs/CONFIG.md", "utf8");
  const schema = describeConfig();

  it("documents every setting with its default, type, bounds and variable, and nothing else", () => {
    expect(compare(md, schema)).to.deep.equal([]);
  });

  it("the comparison catches drift both ways (so the check above can fail)", () => {
    expect(schema.length).to.be.greaterThan(60);
    expect(settingsRows(md).length).to.equal(schema.length);
    const missing = md.replace(/^\| `limits\.blocksPerUser` .*\n/m, "");
    expect(compare(missing, schema)).to.deep.equal(["limits.blocksPerUser: in the schema, not documented"]);
    const wrongDefault = md.replace("| `delivery.batchSize` | `20` |", "| `delivery.batchSize` | `25` |");
    expect(compare(wrongDefault, schema)).to.deep.equal(["delivery.batchSize: default 20, documented 25"]);
    const unknown = md.replace(
      "| `limits.maxDepth` |",
      "| `limits.maxDepht` | `1` | 1–2 | typo |\n| `limits.maxDepth` |",
    );
    expect(compare(unknown, schema)).to.deep.equal(["limits.maxDepht: documented, not in the schema"]);
    const bounds = md.replace(
      "| `card.maxItemsPerField` | `20` | 1–1000 |",
      "| `card.maxItemsPerField` | `20` | 1–100 |",
    );
    expect(compare(bounds, schema)).to.deep.equal([
      "card.maxItemsPerField: bounds 1–1000, documented '1–100'",
    ]);
    const provider = md.replace(/^\| `connections` \| \| `2` \|/m, "| `connections` | | `3` |");
    expect(compare(provider, schema)).to.deep.equal(["push.apns.connections: default 2, documented 3"]);
    const env = md.replace("| `CARDLINK_DB` | `database.path` |", "| `CARDLINK_DB` | `dataDir` |");
    expect(compare(env, schema)).to.deep.equal(["CARDLINK_DB: sets database.path, documented '`dataDir`'"]);
  });

  it("every setting has a one-line description in the schema", () => {
    for (const s of schema) {
      expect(s.description, s.key).to.match(/\S/);
      expect(s.description, s.key).not.to.include("\n");
    }
  });

  it("the schema's defaults are what loadConfig gives when nothing is set", () => {
    const c = loadConfig({ env: { CARDLINK_SECRET: "s" } }) as unknown as Record<string, unknown>;
    const at = (key: string): unknown =>
      key.split(".").reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], c);
    // Derived defaults ("" / [] meaning "from another setting") are filled in by loadConfig; providers are off.
    const derived = ["secret", "allowedDomains", "dataDir", "database.path"];
    for (const s of schema) {
      if (derived.includes(s.key) || s.key.startsWith("push.apns") || s.key.startsWith("push.fcm")) continue;
      expect(at(s.key), s.key).to.deep.equal(s.default);
    }
  });
});

/**
 * Portable SQL text (docs/REDESIGN.md §2.1): named `:name` parameters, rewritten once per text to the backend's
 * placeholders, and a per-connection statement cache keyed by the text. SQL texts are module-level constants, so
 * both caches stay small; each is capped anyway, so a bug that builds SQL per call cannot grow them without end.
 */
import type { Backend, Dialect, Param, Params } from "./store.js";

export interface CompiledSql {
  /** The text with `?` (SQLite) or `$1…$n` (PostgreSQL) in place of each `:name`. */
  text: string;
  /** The parameter name of each placeholder, in order (a name used twice appears twice for `?`). */
  names: string[];
}

const CACHE_CAP = 2000;
const compiled = { "?": new Map<string, CompiledSql>(), $: new Map<string, CompiledSql>() };

/**
 * Rewrites `:name` to placeholders, skipping string literals, quoted identifiers, comments and PostgreSQL's `::`
 * casts. `?` style repeats a name per use; `$` style gives a repeated name one number.
 */
export function compileNamed(sql: string, style: "?" | "$"): CompiledSql {
  const cache = compiled[style];
  const hit = cache.get(sql);
  if (hit) return hit;
  let text = "";
  const names: string[] = [];
  const numbers = new Map<string, number>();
  let i = 0;
  while (i < sql.length) {
    const c = sql[i] as string;
    const next = sql[i + 1];
    if (c === "'" || c === '"') {
      const end = closing(sql, i, c);
      text += sql.slice(i, end);
      i = end;
    } else if (c === "-" && next === "-") {
      const end = sql.indexOf("\n", i);
      const stop = end < 0 ? sql.length : end;
      text += sql.slice(i, stop);
      i = stop;
    } else if (c === "/" && next === "*") {
      const end = sql.indexOf("*/", i + 2);
      const stop = end < 0 ? sql.length : end + 2;
      text += sql.slice(i, stop);
      i = stop;
    } else if (c === ":" && next === ":") {
      text += "::";
      i += 2;
    } else if (c === ":" && next !== undefined && /[A-Za-z_]/.test(next)) {
      let j = i + 1;
      while (j < sql.length && /[A-Za-z0-9_]/.test(sql[j] as string)) j++;
      const name = sql.slice(i + 1, j);
      if (style === "?") {
        names.push(name);
        text += "?";
      } else {
        let n = numbers.get(name);
        if (n === undefined) {
          names.push(name);
          n = names.length;
          numbers.set(name, n);
        }
        text += `$${n}`;
      }
      i = j;
    } else {
      text += c;
      i++;
    }
  }
  const out = { text, names };
  if (cache.size >= CACHE_CAP) cache.clear();
  cache.set(sql, out);
  return out;
}

/** Index just past the literal starting at `start` ('' and "" inside are escaped quotes). */
function closing(sql: string, start: number, quote: string): number {
  let i = start + 1;
  while (i < sql.length) {
    if (sql[i] === quote) {
      if (sql[i + 1] === quote) i += 2;
      else return i + 1;
    } else i++;
  }
  return sql.length;
}

/** The values for a compiled text, in placeholder order. A missing parameter is a bug: it throws, naming it. */
export function bindValues(c: CompiledSql, params: Params | undefined): Param[] {
  return c.names.map((n) => {
    const v = params?.[n];
    if (v === undefined) throw new Error(`SQL parameter :${n} has no value`);
    return v;
  });
}

/** A per-connection cache of prepared statements by SQL text, capped like the compile cache. */
export class StatementCache<S> {
  private readonly map = new Map<string, S>();

  constructor(
    private readonly prepare: (text: string) => S,
    private readonly cap = CACHE_CAP,
  ) {}

  get(sql: string): S {
    let s = this.map.get(sql);
    if (s === undefined) {
      s = this.prepare(sql);
      if (this.map.size >= this.cap) this.map.clear();
      this.map.set(sql, s);
    }
    return s;
  }

  get size(): number {
    return this.map.size;
  }
}

const SQLITE: Dialect = {
  backend: "sqlite",
  // Writers are serialized by the write lock: there is nothing to skip.
  skipLocked: "",
  jsonIds: (param: string) => `SELECT value FROM json_each(:${param})`,
};

const POSTGRES: Dialect = {
  backend: "postgres",
  skipLocked: "FOR UPDATE SKIP LOCKED",
  jsonIds: (param: string) => `SELECT CAST(jsonb_array_elements_text(CAST(:${param} AS jsonb)) AS bigint)`,
};

export function dialectOf(backend: Backend): Dialect {
  return backend === "sqlite" ? SQLITE : POSTGRES;
}

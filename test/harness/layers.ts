/**
 * The import rules of docs/ARCHITECTURE.md §2 as data, and a checker over compiled files. eslint.config.js
 * states the same rules for the editor; this copy runs over dist/ in CI, so an edge the lint config misses
 * (a drifted pattern, a new folder depth) still fails a test. It sees the imports that survive compilation:
 * type-only imports are erased by tsc, so those are eslint's alone (storage/ → stanzas/model/ types rely on it).
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { isBuiltin } from "node:module";
import path from "node:path";
import ts from "typescript";

export interface Layer {
  name: string;
  /** Whether a source file (project-relative path, e.g. "component/runtime/app.ts") belongs to the layer. */
  owns(file: string): boolean;
  /** Whether `file` may import the project file `target` (both project-relative .ts paths). */
  allows(file: string, target: string): boolean;
  /** npm packages it may import: "any", or a list (node built-ins are always allowed). */
  packages: "any" | readonly string[];
}

const under =
  (...dirs: string[]) =>
  (file: string): boolean =>
    dirs.some((d) => file.startsWith(d));

/** Targets given as folder prefixes ("stanzas/") or exact files ("component/features.ts"). */
const only =
  (...allowed: string[]) =>
  (_file: string, target: string): boolean =>
    allowed.some((a) => target === a || (a.endsWith("/") && target.startsWith(a)));

const FEATURE = /^component\/features\/([^/]+)\//;

/**
 * What a feature module (component/features/<f>/, from S2a on) may import at run time: the public runtime
 * files (design §3.6; router, adhoc, config and metrics are types only, so eslint checks them, and an
 * import of them that survives compilation is a value import and is refused here), stanzas/ (with the
 * model), storage/errors.ts (storage/store.ts is types only), its own folder, another feature's api.ts only,
 * and push/ for the push feature.
 */
const RUNTIME_PUBLIC = [
  "context",
  "uow",
  "events",
  "budget",
  "ratelimit",
  "jid",
  "paging",
  "log",
  // Read-only JID-keyed views (issue 14's admin commands, features/admin; S11).
  "inspect",
  "accounts/api",
  "audience/api",
  "queue/api",
  // The webhook channel's job builder (any feature may send a webhook; docs/ARCHITECTURE.md §6).
  "webhooks/api",
  // The helpers every feature's XEP-0050 commands share (node name, completed step, submitted form).
  "commands",
].map((f) => `component/runtime/${f}.ts`);

function featureAllows(file: string, target: string): boolean {
  const own = FEATURE.exec(file)?.[1];
  const other = FEATURE.exec(target);
  if (other) return other[1] === own || target === `component/features/${other[1]}/api.ts`;
  return (
    RUNTIME_PUBLIC.includes(target) ||
    only("stanzas/", "storage/errors.ts")(file, target) ||
    (own === "push" && target.startsWith("push/"))
  );
}

/** First match wins, so the composition root precedes runtime, and runtime precedes the feature files. */
export const LAYERS: readonly Layer[] = [
  {
    // The one runtime file that wires features in: `run` builds the feature modules, check-config probes the
    // push providers' credentials. It imports the composition list, never a feature file itself.
    name: "composition root",
    owns: (f) => f === "component/runtime/ctl.ts",
    allows: only(
      "component/runtime/",
      "stanzas/",
      "storage/",
      "push/",
      "component/features.ts",
      "component/features/index.ts",
    ),
    packages: "any",
  },
  {
    name: "runtime",
    owns: under("component/runtime/"),
    allows: only("component/runtime/", "stanzas/", "storage/"),
    packages: "any",
  },
  {
    // The composition list (S11): imports every feature module.
    name: "feature list",
    owns: (f) => f === "component/features/index.ts",
    allows: only("component/features/", "component/runtime/"),
    packages: "any",
  },
  {
    // What the composition root needs of the features: the module list with its metric buckets, the modules'
    // migrations and the offline wiring of the database commands (it reads the migration baseline in storage/).
    name: "feature wiring",
    owns: (f) => f === "component/features.ts",
    allows: only("component/features/", "component/runtime/", "storage/"),
    packages: [],
  },
  { name: "feature module", owns: (f) => FEATURE.test(f), allows: featureAllows, packages: "any" },
  {
    // The two entry shims at their historical paths (package.json "bin", the systemd unit, the harness). The
    // old flat feature files (component/*.ts) are gone (S11): any other file directly in component/ is in no
    // layer, so it fails the layers test.
    name: "entry",
    owns: (f) => f === "component/cli.ts" || f === "component/main.ts",
    allows: only("component/runtime/"),
    packages: [],
  },
  { name: "model", owns: under("stanzas/model/"), allows: only("stanzas/model/"), packages: [] },
  { name: "stanzas", owns: under("stanzas/"), allows: only("stanzas/"), packages: "any" },
  { name: "storage", owns: under("storage/"), allows: only("storage/"), packages: "any" },
  { name: "push", owns: under("push/"), allows: only("push/"), packages: "any" },
  { name: "tools", owns: under("test/", "bench/", "scripts/"), allows: () => true, packages: "any" },
];

export interface SourceFile {
  /** Project-relative source path ("push/apns.ts"). */
  file: string;
  /** Its compiled JavaScript (or any text with the same import statements). */
  text: string;
}

export interface Violation {
  file: string;
  layer: string;
  /** What was imported: a project file ("component/runtime/log.ts") or a package name. */
  imports: string;
  why: string;
}

function packageName(spec: string): string {
  const parts = spec.split("/");
  return spec.startsWith("@") ? parts.slice(0, 2).join("/") : (parts[0] ?? spec);
}

/** Every module specifier of import/export declarations and import() calls; comments and strings are not. */
export function importsOf(text: string): string[] {
  return ts.preProcessFile(text, true, true).importedFiles.map((f) => f.fileName);
}

export function checkLayers(files: readonly SourceFile[], layers: readonly Layer[] = LAYERS): Violation[] {
  const out: Violation[] = [];
  for (const { file, text } of files) {
    const layer = layers.find((l) => l.owns(file));
    if (!layer) {
      out.push({ file, layer: "none", imports: "", why: "file is in no layer (a new top-level folder?)" });
      continue;
    }
    for (const spec of importsOf(text)) {
      if (spec.startsWith(".")) {
        const target = path.posix
          .normalize(path.posix.join(path.posix.dirname(file), spec))
          .replace(/\.js$/, ".ts");
        const ok = !target.startsWith("../") && layer.allows(file, target);
        if (!ok)
          out.push({ file, layer: layer.name, imports: target, why: `${layer.name} may not import it` });
      } else if (!isBuiltin(spec)) {
        const pkg = packageName(spec);
        if (layer.packages !== "any" && !layer.packages.includes(pkg)) {
          out.push({ file, layer: layer.name, imports: pkg, why: `${layer.name} imports no npm package` });
        }
      }
    }
  }
  return out;
}

/**
 * The compiled program under `dist`: every .js file whose source .ts still exists (tsc never deletes
 * outputs, so a file moved or removed since an earlier build leaves a stale copy that is not the program).
 */
export function compiledFiles(dist = "dist", root = "."): SourceFile[] {
  const out: SourceFile[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith(".js")) {
        const file = path.relative(dist, p).split(path.sep).join("/").replace(/\.js$/, ".ts");
        if (existsSync(path.join(root, file))) out.push({ file, text: readFileSync(p, "utf8") });
      }
    }
  };
  walk(dist);
  return out;
}

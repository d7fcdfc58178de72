import js from "@eslint/js";
import tseslint from "typescript-eslint";

// ------------------------------------------------------------------------------------------------------------
// Import rules per layer (docs/ARCHITECTURE.md §2). test/harness/layers.ts states the same rules over compiled
// files (test/unit/layers.test.ts), so a drift here still fails CI. Specifiers are relative, so each block is
// for one folder depth; the rules for component/features/<f>/ and runtime subfolders are set ahead of the
// redesign steps that create them. A later block replaces an earlier one's options for files both match.
// ------------------------------------------------------------------------------------------------------------

/** A regex prefix for a specifier that climbs exactly n folders (`../` n times). */
const up = (n) => `^(?:\\.\\./){${n}}`;
const ARCH = "(docs/ARCHITECTURE.md)";
const rule = (...patterns) => ({
  "@typescript-eslint/no-restricted-imports": [
    "error",
    { patterns: patterns.map((p) => ({ ...p, message: `${p.message} ${ARCH}` })) },
  ],
});
const TOOLS = "(?:test|bench|scripts)/";
// Design §3.6: what a feature module may use of the runtime; the second list is types only.
const RUNTIME_PUBLIC =
  "(?:context|uow|events|budget|ratelimit|jid|paging|log|inspect|accounts/api|audience/api|queue/api|webhooks/api|commands)";
const RUNTIME_TYPES = "(?:router|adhoc|config|metrics)";
const featurePatterns = (mayUsePush) => [
  { regex: `${up(1)}(?!\\.\\./)(?![^/]+/api\\.js$)`, message: "another feature only through its api.ts" },
  {
    regex: `${up(2)}(?!runtime/|\\.\\./)`,
    message: "a feature module never imports the old component/ files",
  },
  {
    regex: `${up(2)}runtime/(?!${RUNTIME_PUBLIC}\\.js$)(?!${RUNTIME_TYPES}\\.js$)`,
    message: "a feature module uses the public runtime files only",
  },
  { regex: `${up(2)}runtime/${RUNTIME_TYPES}\\.js$`, allowTypeImports: true, message: "types only" },
  { regex: `${up(3)}storage/(?!errors\\.js$|store\\.js$)`, message: "storage/ only through store.ts types" },
  { regex: `${up(3)}storage/store\\.js$`, allowTypeImports: true, message: "storage/store.ts: types only" },
  ...(mayUsePush ? [] : [{ regex: `${up(3)}push/`, message: "only the push feature imports push/" }]),
  { regex: `${up(3)}${TOOLS}`, message: "production code never imports test/, bench/, scripts/" },
];
const storagePatterns = (depth) => [
  { regex: `${up(depth)}(?!stanzas/model/)`, message: "storage/ imports only storage/" },
  {
    regex: `${up(depth)}stanzas/model/`,
    allowTypeImports: true,
    message: "storage/ may import only types from stanzas/model/",
  },
];
const runtimePatterns = (depth) => [
  { regex: `${up(depth - 1)}(?!runtime/|\\.\\./)`, message: "component/runtime/ never imports a feature" },
  { regex: `${up(depth)}(?:push/|${TOOLS})`, message: "component/runtime/ never imports push/, test/, …" },
];
const layerRules = [
  { files: ["push/*.ts"], rules: rule({ regex: up(1), message: "push/ imports only push/" }) },
  { files: ["stanzas/*.ts"], rules: rule({ regex: up(1), message: "stanzas/ imports only stanzas/" }) },
  {
    files: ["stanzas/model/*.ts"],
    rules: rule(
      { regex: up(1), message: "stanzas/model/ imports only stanzas/model/: no XML, no stanzas/" },
      { regex: "^(?!node:)[^.]", message: "stanzas/model/ imports node built-ins only, no npm package" },
    ),
  },
  { files: ["storage/*.ts"], rules: rule(...storagePatterns(1)) },
  { files: ["storage/*/*.ts"], rules: rule(...storagePatterns(2)) },
  { files: ["component/runtime/*.ts"], rules: rule(...runtimePatterns(2)) },
  { files: ["component/runtime/*/*.ts"], rules: rule(...runtimePatterns(3)) },
  {
    // The composition root: wires in the feature list and probes the push providers (check-config).
    files: ["component/runtime/ctl.ts"],
    rules: rule(
      {
        regex: `${up(1)}(?!runtime/|\\.\\./|features\\.js$|features/index\\.js$)`,
        message: "the composition root imports the feature list, no feature file",
      },
      { regex: `${up(2)}${TOOLS}`, message: "production code never imports test/, bench/, scripts/" },
    ),
  },
  {
    // Directly in component/: the entry shims and the feature wiring (features.ts) only, no flat feature file.
    files: ["component/*.ts"],
    rules: rule(
      {
        regex: "^\\./(?!runtime/|features/|features\\.js$)",
        message: "component/ holds the entry shims and the feature wiring: no flat feature files",
      },
      { regex: `${up(1)}(?!storage/)`, message: "component/*.ts imports component/ and storage/ only" },
    ),
  },
  {
    files: ["component/features/*.ts"],
    rules: rule({
      regex: `^(?:\\.\\./)+${TOOLS}`,
      message: "production code never imports test/, bench/, scripts/",
    }),
  },
  { files: ["component/features/*/*.ts"], rules: rule(...featurePatterns(false)) },
  { files: ["component/features/push/*.ts"], rules: rule(...featurePatterns(true)) },
];

export default tseslint.config(
  { ignores: ["dist/", "run/", "node_modules/", "eslint.config.js"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
    },
  },
  {
    files: ["**/*.cjs"],
    languageOptions: {
      sourceType: "commonjs",
      globals: { require: "readonly", module: "writable", process: "readonly" },
    },
    rules: { "@typescript-eslint/no-require-imports": "off" },
  },
  ...layerRules,
  {
    // chai's property assertions (`expect(x).to.exist`) are expressions by design.
    files: ["test/**/*.ts"],
    rules: { "@typescript-eslint/no-unused-expressions": "off" },
  },
);

import js from "@eslint/js";
import tseslint from "typescript-eslint";

/** `^(\.\./){n}`: a specifier that climbs n folders, i.e. out of a file's layer at depth n. */
const up = (n) => `^(?:\\.\\./){${n}}`;
const rule = (...patterns) => ({ "@typescript-eslint/no-restricted-imports": ["error", { patterns }] });
const ARCH = "(docs/ARCHITECTURE.md)";
const layerRules = [
  { files: ["push/*.ts"], rules: rule({ regex: up(1), message: `push/ imports only push/ ${ARCH}` }) },
  {
    files: ["stanzas/*.ts"],
    rules: rule({ regex: up(1), message: `stanzas/ imports only stanzas/ ${ARCH}` }),
  },
  {
    files: ["stanzas/model/*.ts"],
    rules: rule(
      { regex: up(1), message: `stanzas/model/ imports only stanzas/model/: no XML, no stanzas/ ${ARCH}` },
      {
        regex: "^(?!node:)[^.]",
        message: `stanzas/model/ imports node built-ins only, no npm package ${ARCH}`,
      },
    ),
  },
  ...[1, 2].map((depth) => ({
    files: [depth === 1 ? "storage/*.ts" : "storage/*/*.ts"],
    rules: rule(
      {
        regex: `${up(depth)}(?!stanzas/model/)`,
        message: `storage/ imports only storage/ (and types from stanzas/model/) ${ARCH}`,
      },
      {
        regex: `${up(depth)}stanzas/model/`,
        allowTypeImports: true,
        message: `storage/ may import only types from stanzas/model/ ${ARCH}`,
      },
    ),
  })),
  {
    files: ["component/runtime/*.ts"],
    rules: rule(
      { regex: "^\\.\\./(?!\\.\\./)", message: `component/runtime/ never imports a feature file ${ARCH}` },
      {
        regex: `${up(2)}(?:push|test|bench|scripts)/`,
        message: `component/runtime/ never imports that ${ARCH}`,
      },
    ),
  },
  {
    // The composition root: wires in the feature list and probes the push providers (check-config).
    files: ["component/runtime/ctl.ts"],
    rules: rule(
      {
        regex: "^\\.\\./(?!\\.\\./|features\\.js$)",
        message: `the composition root imports component/features.ts, no feature file ${ARCH}`,
      },
      { regex: `${up(2)}(?:test|bench|scripts)/`, message: `runtime code never imports that ${ARCH}` },
    ),
  },
  {
    files: ["component/*.ts"],
    rules: rule({
      regex: `${up(1)}(?:test|bench|scripts)/`,
      message: `production code never imports that ${ARCH}`,
    }),
  },
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
  // Import rules per layer (docs/ARCHITECTURE.md §2); test/unit/layers.test.ts checks the same edges over dist/.
  // Relative specifiers depend on a file's depth, hence one block per folder depth. A later block replaces an
  // earlier one's options for the files both match (the composition root after runtime).
  ...layerRules,
  {
    // chai's property assertions (`expect(x).to.exist`) are expressions by design.
    files: ["test/**/*.ts"],
    rules: { "@typescript-eslint/no-unused-expressions": "off" },
  },
);

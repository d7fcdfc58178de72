/**
 * What the legacy core (component/*.ts on the old store, deleted in issue 8 S11) produced for given inputs,
 * captured once into test/golden/legacy-core/ while it still existed (see that folder's README.md). Tests that
 * proved the new core byte-identical to the legacy one by running both now compare the new core's live output
 * to these files.
 *
 * A case is `<area>/<name>.in.json` (the inputs the legacy code was given, pinned: a test passes the inputs it
 * uses and they must be the captured ones, so a golden can never silently stand for other inputs) and
 * `<name>.out.<ext>` (the legacy output, byte for byte, no trailing newline added). `{{var}}` in both stands for
 * a value that is random on the live side (a request or binding id); the capture used a fixed value there and
 * the test fills in its own, as the old test gave the legacy side the new side's ids.
 */
import { expect } from "chai";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";

// Tests run from dist/test/…, golden files live in the source tree; mocha is started from the project root.
export const LEGACY_GOLDEN = path.resolve(process.cwd(), "test", "golden", "legacy-core");

/** Compares `input` with the case's captured inputs (fails if they differ or the case is missing). */
function checkInput(area: string, name: string, input: unknown): void {
  const file = path.join(LEGACY_GOLDEN, area, `${name}.in.json`);
  expect(existsSync(file), `golden ${area}/${name}.in.json`).to.equal(true);
  const want = JSON.parse(readFileSync(file, "utf8")) as unknown;
  // JSON round trip: the live input as the capture wrote it (undefined members dropped, numbers as numbers).
  expect(JSON.parse(JSON.stringify(input)), `inputs of golden ${area}/${name}`).to.deep.equal(want);
}

function fill(text: string, vars: Record<string, string>): string {
  return text.replace(/\{\{(\w+)\}\}/g, (m: string, k: string) => {
    const v = vars[k];
    if (v === undefined) throw new Error(`golden placeholder ${m} has no value`);
    return v;
  });
}

/**
 * The legacy output of case `area/name` for `input` (checked against the captured inputs; pass `undefined` for a
 * case that has no inputs), with `{{var}}` filled from `vars`. `ext` is the output's extension.
 */
export function legacyOutput(
  area: string,
  name: string,
  ext: string,
  input: unknown,
  vars: Record<string, string> = {},
): string {
  if (input !== undefined) checkInput(area, name, input);
  return fill(readFileSync(path.join(LEGACY_GOLDEN, area, `${name}.out.${ext}`), "utf8"), vars);
}

/** The captured inputs of case `area/name`, for a case whose inputs were drawn at capture (random samples). */
export function legacyInput<T>(area: string, name: string): T {
  return JSON.parse(readFileSync(path.join(LEGACY_GOLDEN, area, `${name}.in.json`), "utf8")) as T;
}

/** A legacy output stored as JSON (pretty-printed on disk), parsed. */
export function legacyJson<T>(
  area: string,
  name: string,
  input: unknown,
  vars: Record<string, string> = {},
): T {
  return JSON.parse(legacyOutput(area, name, "json", input, vars)) as T;
}

/**
 * The `cardlink` command: see ctl.ts and docs/OPERATIONS.md §2. package.json "bin" names the shim
 * component/cli.ts, which only imports this file, so installed units and links keep their path.
 */
import { cli } from "./ctl.js";

cli(process.argv.slice(2)).then(
  (code) => {
    if (code !== "running") process.exit(code);
  },
  (e: unknown) => {
    process.stderr.write(`cardlink: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);

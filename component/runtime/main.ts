/**
 * The historical entry, kept for scripts and the test harness: `node dist/component/main.js [--config FILE]` is
 * `cardlink run [--config FILE]` (unknown flags are a usage error, exit 2, like every other command). That path
 * is the shim component/main.ts, which only imports this file.
 */
import { cli } from "./ctl.js";

cli(["run", ...process.argv.slice(2)]).then(
  (code) => {
    if (code !== "running") process.exit(code);
  },
  (e: unknown) => {
    process.stderr.write(`cardlink: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);

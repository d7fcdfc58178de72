#!/usr/bin/env node
/** The `cardlink` command (package.json "bin"): see component/ctl.ts and docs/OPERATIONS.md §2. */
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

#!/usr/bin/env node
/** package.json "bin" and the systemd unit name this path: the `cardlink` command is runtime/cli.ts. */
import "./runtime/cli.js";

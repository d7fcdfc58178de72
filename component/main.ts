/** Command-line entry: `node dist/component/main.js [--config file.json]`. SIGTERM/SIGINT stop gracefully. */
import { createCardlink } from "./app.js";
import { ConfigError, loadConfig } from "./config.js";
import { allFeatures } from "./features.js";
import { createLogger } from "./log.js";

function argValue(flag: string): string | undefined {
  const i = process.argv.indexOf(flag);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(argValue("--config") ? { file: argValue("--config") as string } : {});
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`cardlink: configuration error: ${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
  const log = createLogger(config.log.level);
  const app = createCardlink(config, { log, features: allFeatures() });
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ event: "signal", signal }, "signal received");
    app.stop().then(
      () => process.exit(0),
      (e: unknown) => {
        log.error({ event: "stop-failed", err: (e as Error).message }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
  await app.start();
  log.info(
    { event: "started", domain: config.domain, service: config.service, db: config.database.path },
    "cardlink started",
  );
}

main().catch((e: unknown) => {
  process.stderr.write(`cardlink: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});

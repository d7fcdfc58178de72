/**
 * webhooks.connectors as the sender needs them: secrets decoded, CA files read — once, at start-up, so a
 * missing CA file stops the service with a configuration error instead of failing every webhook later.
 */
import { readFileSync } from "node:fs";
import { ConfigError, type ConnectorConfig } from "../config.js";
import type { Connector } from "./sender.js";
import { secretKey } from "./signature.js";

export function resolveConnectors(list: readonly ConnectorConfig[]): Connector[] {
  return list.map((c, i) => {
    let ca: Buffer | undefined;
    if (c.caFile !== undefined) {
      try {
        ca = readFileSync(c.caFile);
      } catch (e) {
        throw new ConfigError(`webhooks.connectors[${i}].caFile: ${(e as Error).message}`);
      }
    }
    return {
      name: c.name,
      url: new URL(c.url),
      key: secretKey(c.secret),
      timeoutMs: c.timeoutMs,
      ...(ca ? { ca } : {}),
    };
  });
}

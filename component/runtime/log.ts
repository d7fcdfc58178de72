/** Structured logs: one JSON line per event (pino). Bad input is logged as a fact, never with a stack trace. */
import { pino, type Logger } from "pino";

export type { Logger };

export function createLogger(level: string, name = "cardlink"): Logger {
  return pino({ name, level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
}

/**
 * Runs a promise nobody awaits, logging its failure: an unhandled rejection would end the process (Node ≥ 15),
 * and a background task's failure (e.g. a write while the database closes) must not take cardlink down.
 */
export function detach(log: Logger, event: string, p: Promise<unknown>): void {
  p.catch((e: unknown) => log.error({ event, err: (e as Error).message }, "background task failed"));
}

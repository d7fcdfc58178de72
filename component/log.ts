/** Structured logs: one JSON line per event (pino). Bad input is logged as a fact, never with a stack trace. */
import { pino, type Logger } from "pino";

export type { Logger };

export function createLogger(level: string, name = "cardlink"): Logger {
  return pino({ name, level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
}

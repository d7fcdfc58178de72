/**
 * LISTEN on a dedicated connection (issue 13: wake-ups across processes). A pool client cannot listen: the pool
 * hands it to the next unit of work. node-postgres does not reconnect a Client, so this does: on 'error' or
 * 'end' the connection is dropped and a new one is made after a capped full-jitter backoff (250 ms doubling to
 * 10 s), LISTEN is issued again, and onConnected(false) tells the caller that whatever was notified meanwhile is
 * lost (it re-scans). Polling by the caller stays the safety net for anything this misses.
 */
import pg from "pg";
import type { Logger } from "pino";
import type { ListenHandlers } from "../store.js";

const BASE_MS = 250;
const MAX_MS = 10_000;

/** A channel name is an SQL identifier here (LISTEN takes no parameter): only these characters. */
const CHANNEL = /^[a-z_][a-z0-9_]{0,62}$/;

export function startListener(
  config: pg.ClientConfig,
  channel: string,
  h: ListenHandlers,
  log: Logger,
): () => Promise<void> {
  if (!CHANNEL.test(channel)) throw new Error(`LISTEN channel '${channel}' is not a plain identifier`);
  let client: pg.Client | undefined;
  let stopped = false;
  let attempt = 0;
  let timer: NodeJS.Timeout | undefined;
  let connectedOnce = false;

  const schedule = (): void => {
    if (stopped || timer) return;
    const delay = Math.random() * Math.min(MAX_MS, BASE_MS * 2 ** Math.min(attempt, 16));
    attempt++;
    timer = setTimeout(() => {
      timer = undefined;
      void connect();
    }, delay);
    timer.unref();
  };

  const drop = (c: pg.Client, why: string): void => {
    if (client !== c) return;
    client = undefined;
    c.removeAllListeners("notification");
    c.end().catch(() => undefined);
    if (stopped) return;
    log.warn({ event: "listen-lost", channel, err: why }, "notification connection lost; reconnecting");
    schedule();
  };

  const connect = async (): Promise<void> => {
    if (stopped) return;
    const c = new pg.Client({ ...config, application_name: "cardlink-listen" });
    client = c;
    c.on("error", (e: Error) => drop(c, e.message));
    c.on("end", () => drop(c, "connection ended"));
    c.on("notification", (n) => {
      if (n.channel === channel) h.onMessage(n.payload ?? "");
    });
    try {
      await c.connect();
      await c.query(`LISTEN ${channel}`);
    } catch (e) {
      drop(c, (e as Error).message);
      return;
    }
    if (client !== c || stopped) return;
    attempt = 0;
    const first = !connectedOnce;
    connectedOnce = true;
    if (!first) log.info({ event: "listen-restored", channel }, "notification connection restored");
    h.onConnected(first);
  };

  void connect();
  return async () => {
    stopped = true;
    clearTimeout(timer);
    const c = client;
    client = undefined;
    if (c) await c.end().catch(() => undefined);
  };
}

/**
 * The webhook channel as any feature uses it (docs/ARCHITECTURE.md §6 "The webhook channel"): enqueue one job in
 * the caller's unit of work with `u.queue.job(WEBHOOK_CHANNEL, webhookJob(connector, type, data, …))`. The job
 * loop posts it to the connector named in `webhooks.connectors` (docs/CONFIG.md), signed the Standard Webhooks
 * way, retries with backoff (honouring Retry-After), and dead-letters it when the receiver refuses it for good
 * or the attempts run out; the administrator lists and replays dead letters (docs/OPERATIONS.md "Webhooks").
 *
 * The body is fixed at enqueue — `{"type", "timestamp", "data"}`, the Standard Webhooks payload shape — so every
 * attempt sends the same bytes under the same `webhook-id` (the job's uid): the receiver deduplicates on it.
 */
import type { AccountId } from "../../../storage/store.js";
import type { JobSpec, Json } from "../queue/api.js";

export const WEBHOOK_CHANNEL = "webhook";

/** An event type: `<area>.<event>` in lower case (Standard Webhooks: "full-stop delimited"). */
export const EVENT_TYPE = /^[a-z][a-z0-9_-]{0,31}(?:\.[a-z][a-z0-9_-]{0,31}){1,3}$/;

/** What the receiver gets as the request body (JSON). */
export interface WebhookEnvelope {
  [k: string]: Json;
  type: string;
  /** When the event happened (ISO 8601, UTC): not the attempt's time, which is the webhook-timestamp header. */
  timestamp: string;
  data: Json;
}

export interface WebhookJobOptions {
  /** The event's time (the unit of work's u.now). */
  now: number;
  /** The account the event is about: the job goes with it when the account is deleted. */
  account?: AccountId;
  /** Replace-newest key: a pending webhook of this connector with the same key is replaced (same webhook-id). */
  ckey?: string;
}

/** The job spec of one webhook to `connector` (a `webhooks.connectors[].name`). */
export function webhookJob(connector: string, type: string, data: Json, o: WebhookJobOptions): JobSpec {
  if (!EVENT_TYPE.test(type)) throw new Error(`webhook event type '${type}' is not <area>.<event>`);
  const body: WebhookEnvelope = { type, timestamp: new Date(o.now).toISOString(), data };
  return {
    kind: type,
    target: connector,
    body,
    ...(o.account === undefined ? {} : { account: o.account }),
    ...(o.ckey === undefined ? {} : { ckey: o.ckey }),
  };
}

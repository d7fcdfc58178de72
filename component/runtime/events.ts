/**
 * Domain events that connect features without direct calls (Prosody's `module:fire_event` pattern).
 *
 * Two kinds of subscriber (docs/REDESIGN.md §3.5): `onTx` handlers run inside the emitting unit of work (their
 * writes commit or roll back with it: this is how features meet without constructor wiring); `on` listeners run
 * after commit (hints: kicks, logs, metrics, caches). `UnitOfWork.emit` (uow.ts) runs both in that order. The
 * legacy features still call `EventBus.emit` directly, outside any unit of work: that reaches `on` listeners at
 * once, as before.
 *
 * Features add their own events by declaration merging on DomainEvents in their own files, so no shared file
 * is edited when a feature lands:
 *
 *   declare module "../../runtime/events.js" {
 *     interface DomainEvents { "group.member-added": { group: string; member: AccountId } }
 *   }
 */
import { EventEmitter } from "node:events";
import type { AccountId, DeviceKey, Seq } from "../../storage/store.js";
import type { BareJid } from "./accounts/api.js";
import type { UnitOfWork } from "./uow.js";

export interface DomainEvents {
  // Legacy features (component/*.ts; deleted at the switch, issue 8 S11). -------------------------------------
  /** An outbox entry was written for `recipient` (bare JID); delivery should try now. */
  "outbox.enqueued": { recipients: string[] };
  /**
   * A user became available at a full JID (`again`: an available presence from a resource already known).
   * The redesign's payload is `{account, full, device?}` (§3.5); it replaces this one with the legacy presence
   * at the switch (S7 writes the new presence, S11 deletes the old), as two payloads cannot share one name.
   */
  "presence.available": { bare: string; full: string; again?: boolean };
  /** Redesign payload: `{account, full, last}` (§3.5), replacing this one at the switch as above. */
  "presence.unavailable": { bare: string; full: string };
  /** Entries are waiting for a recipient that has no available resource: push may wake a device. */
  "delivery.recipient-offline": { recipient: string; kinds: string[]; subjects: string[] };

  // Runtime events of the redesign (§3.5). Feature-owned ones (card.updated, binding.*, exchange.blocked) are
  // declared by their features. ----------------------------------------------------------------------------
  "account.created": { account: AccountId; jid: BareJid; placeholder: boolean };
  /** A placeholder account acted for the first time (ensure with seen). */
  "account.activated": { account: AccountId };
  /** Issue 14's delete-user: every feature removes its rows (in-tx). */
  "account.deleting": { account: AccountId };
  /** Issue 12: an identifier was added, replaced or removed (`from`/`to` are identifier values). */
  "identifier.changed": { account: AccountId; kind: "jid" | "tel" | "email"; from?: string; to: string };
  "device.registered": { account: AccountId; device: DeviceKey };
  /** In-tx: the queue deletes the device's cursor; push nodes and jobs go by foreign key. */
  "device.removed": { account: AccountId; device: DeviceKey };
  /** Post-commit only (QueueTx registers it with afterCommit): the engine kicks these lanes and the observers. */
  "queue.appended": { lanes: AccountId[]; seq: Seq };
  /** Post-commit only: the engine kicks the channel. */
  "jobs.enqueued": { channel: string };
  /**
   * In the settle unit of work, once per settled job (issue 12: a feature records what became of the jobs it
   * enqueued, by the job's uid). `outcome`: `done`, `dropped`, `dead` (dead-lettered: refused for good or
   * attempts exhausted), or `retry` (another attempt follows; `attempts` counts this one).
   */
  "job.settled": {
    channel: string;
    kind: string;
    uid: string;
    account?: AccountId;
    outcome: "done" | "dropped" | "dead" | "retry";
    reason?: string;
    attempts: number;
  };
  /** The unit of work that removed every resource of an account after a failed delivery (push announces). */
  "delivery.all-gone": { account: AccountId };
}

export type EventName = keyof DomainEvents;

/** An in-unit-of-work handler: it may write through `u` and emit further events (depth limit 8, uow.ts). */
export type TxHandler<K extends EventName> = (u: UnitOfWork, e: DomainEvents[K]) => Promise<void> | void;

export class EventBus {
  private readonly ee = new EventEmitter();
  // Keyed by event name; a handler list per name, run in registration order.
  private readonly txHandlers = new Map<EventName, Array<TxHandler<never>>>();

  constructor() {
    this.ee.setMaxListeners(50);
  }

  /** A post-commit listener (or, for the legacy features' direct emit, an immediate one). */
  on<K extends EventName>(name: K, fn: (e: DomainEvents[K]) => void): void {
    this.ee.on(name, fn);
  }

  /** An in-unit-of-work handler: runs inside every unit of work that emits `name`; a throw rolls it back. */
  onTx<K extends EventName>(name: K, fn: TxHandler<K>): void {
    const list = this.txHandlers.get(name) ?? [];
    list.push(fn as TxHandler<never>);
    this.txHandlers.set(name, list);
  }

  /** Calls the `on` listeners now. UnitOfWork.emit calls it after commit; legacy code calls it directly. */
  emit<K extends EventName>(name: K, e: DomainEvents[K]): void {
    this.ee.emit(name, e);
  }

  /**
   * Runs the `onTx` handlers of `name` one after another inside `u`. Called by UnitOfWork.emit only (uow.ts),
   * which also schedules the post-commit `emit`; features call `u.emit`.
   */
  async runTx<K extends EventName>(u: UnitOfWork, name: K, e: DomainEvents[K]): Promise<void> {
    // A copy: a handler registering another handler mid-run must not change this run.
    for (const fn of [...(this.txHandlers.get(name) ?? [])]) await (fn as TxHandler<K>)(u, e);
  }
}

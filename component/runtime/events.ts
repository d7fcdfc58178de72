/** Domain events that connect features without direct calls (Prosody's `module:fire_event` pattern). */
import { EventEmitter } from "node:events";

export interface DomainEvents {
  /** An outbox entry was written for `recipient` (bare JID); delivery should try now. */
  "outbox.enqueued": { recipients: string[] };
  /** A user became available at a full JID (`again`: an available presence from a resource already known). */
  "presence.available": { bare: string; full: string; again?: boolean };
  "presence.unavailable": { bare: string; full: string };
  /** Entries are waiting for a recipient that has no available resource: push may wake a device. */
  "delivery.recipient-offline": { recipient: string; kinds: string[]; subjects: string[] };
}

export class EventBus {
  private readonly ee = new EventEmitter();

  constructor() {
    this.ee.setMaxListeners(50);
  }

  on<K extends keyof DomainEvents>(name: K, fn: (e: DomainEvents[K]) => void): void {
    this.ee.on(name, fn);
  }

  emit<K extends keyof DomainEvents>(name: K, e: DomainEvents[K]): void {
    this.ee.emit(name, e);
  }
}

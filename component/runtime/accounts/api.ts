/**
 * Public types of the accounts part (docs/REDESIGN.md §3.2): the integer account id behind every JID, and the
 * devices that belong to an account. Implemented by accounts/tx.ts (issue 8 step S3); features use these types.
 */
import type { AccountId, DeviceKey } from "../../../storage/store.js";

export type BareJid = string; // normalized by the fair branch's single normaliser
export interface AccountsRead {
  resolve(jid: BareJid): Promise<AccountId | undefined>; // cached
  jidOf(id: AccountId): Promise<BareJid>; // primary JID; cached
  jidsOf(ids: readonly AccountId[]): Promise<Map<AccountId, BareJid>>;
  devices(id: AccountId): Promise<Device[]>;
  device(id: AccountId, deviceId: string): Promise<Device | undefined>;
}
/** One identifier row (issue 12): a JID, phone number (E.164) or e-mail address of an account. */
export interface Identifier {
  kind: "jid" | "tel" | "email";
  value: string;
  account: AccountId;
  state: "active" | "pending" | "held";
  primary: boolean;
  verifiedAt?: number;
  heldUntil?: number;
}
export interface AccountsTx extends AccountsRead {
  /** The identifier (kind, value) whatever its state and owner; undefined when nobody has it. */
  identifierOf(kind: Identifier["kind"], value: string): Promise<Identifier | undefined>;
  /**
   * Adds an active identifier to the account (issue 12: a verified phone number or e-mail, or the new primary JID
   * of a move — the caller has cleared the old primary first). A taken (kind, value) is a StoreConflictError.
   */
  addIdentifier(
    id: AccountId,
    i: { kind: Identifier["kind"]; value: string; primary?: boolean; verifiedAt: number },
  ): Promise<void>;
  /** Deletes an account with nothing of its own (issue 12: the new JID's empty account a move absorbs). */
  deleteAccount(id: AccountId): Promise<void>;
  /** The account for jid, created (with its shared cursor) if missing; `seen` marks the JID as having acted. */
  ensure(jid: BareJid, o?: { seen?: boolean }): Promise<AccountId>;
  upsertDevice(id: AccountId, d: DeviceInput, maxPerUser: number): Promise<Device | "over-limit">;
  removeDevice(id: AccountId, deviceId: string): Promise<boolean>; // emits device.removed in-tx
  invalidateToken(token: string): Promise<number>;
}
export interface Device {
  key: DeviceKey;
  account: AccountId;
  deviceId: string;
  platform: "ios" | "android" | "other";
  name?: string;
  pushToken?: string;
  pushTopic?: string;
  pushKey?: string;
  tokenState: "none" | "ok" | "invalid";
  createdAt: number;
  updatedAt: number;
}
/**
 * Not in §3.2 (it names the type only): what a client declares in a device registration, i.e. a Device without
 * the parts the store assigns (key, account, token state, times) — the same fields the legacy DeviceRepo.upsert
 * took, minus the owner JID.
 */
export type DeviceInput = Omit<Device, "key" | "account" | "tokenState" | "createdAt" | "updatedAt">;

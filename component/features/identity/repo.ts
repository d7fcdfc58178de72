/**
 * SQL of the identity feature (migrations.ts): verification codes, moves, registered services and update requests,
 * and the few statements a move runs on the core's `identifiers` and `resources`. Portable subset
 * (docs/REDESIGN.md §2.1): named parameters, module-constant texts, `ON CONFLICT`, no dialect-specific function.
 */
import type { AccountId, Params, Sql } from "../../../storage/store.js";
import type { IdentifierKind, ServiceStatus } from "../../../stanzas/identity.js";

export type CodePurpose = "add" | "move";
export interface CodeRow {
  account: AccountId;
  kind: "tel" | "email";
  value: string;
  purpose: CodePurpose;
  moveId?: string;
  codeHash: string;
  attemptsLeft: number;
  expiresAt: number;
}
export type MoveState = "offered" | "confirming" | "done";
export interface MoveRow {
  id: string;
  account: AccountId;
  kind: IdentifierKind;
  oldValue: string;
  newValue: string;
  state: MoveState;
  createdAt: number;
  expiresAt: number;
  doneAt?: number;
}
export interface ServiceRow {
  id: string;
  account: AccountId;
  kind: IdentifierKind;
  identifier: string;
  service: string;
  provider: string;
  remark: string;
  receivedAt: number;
  status: ServiceStatus;
  mode?: "automatic" | "manual";
  updateId?: string;
  newIdentifier?: string;
  reason?: string;
  attempts: number;
}
export interface UpdateRow {
  id: string;
  account: AccountId;
  kind: IdentifierKind;
  oldValue: string;
  newValue: string;
  state: "confirming" | "confirmed";
  createdAt: number;
}

// ------------------------------------------------------------------------------------------------ codes

const UPSERT_CODE = `INSERT INTO identity_codes
  (account_id, kind, value, purpose, move_id, code_hash, attempts_left, expires_at, created_at)
  VALUES (:account, :kind, :value, :purpose, :move, :hash, :attempts, :expires, :now)
  ON CONFLICT (account_id, kind, value, purpose) DO UPDATE SET move_id = excluded.move_id,
    code_hash = excluded.code_hash, attempts_left = excluded.attempts_left, expires_at = excluded.expires_at,
    created_at = excluded.created_at`;
const CODE = `SELECT account_id, kind, value, purpose, move_id, code_hash, attempts_left, expires_at
  FROM identity_codes WHERE account_id = :account AND kind = :kind AND value = :value AND purpose = :purpose`;
const CODES_OF = `SELECT account_id, kind, value, purpose, move_id, code_hash, attempts_left, expires_at
  FROM identity_codes WHERE account_id = :account AND expires_at > :now ORDER BY created_at, kind, value`;
const COUNT_OPEN_CODES = `SELECT COUNT(*) AS n FROM identity_codes WHERE account_id = :account
  AND expires_at > :now AND NOT (kind = :kind AND value = :value AND purpose = :purpose)`;
const SPEND_ATTEMPT = `UPDATE identity_codes SET attempts_left = attempts_left - 1
  WHERE account_id = :account AND kind = :kind AND value = :value AND purpose = :purpose`;
const DELETE_CODE = `DELETE FROM identity_codes
  WHERE account_id = :account AND kind = :kind AND value = :value AND purpose = :purpose`;
const SWEEP_CODES = "DELETE FROM identity_codes WHERE expires_at <= :now";

// ------------------------------------------------------------------------------------------ identifiers

// Tel and e-mail identifiers of an account that count against identity.maxIdentifiers (held ones included:
// a hold is a slot the user's own move or removal used).
const COUNT_IDENTIFIERS = `SELECT COUNT(*) AS n FROM identifiers WHERE account_id = :account
  AND kind <> 'jid' AND (state = 'active' OR (state = 'held' AND held_until > :now))`;
const HOLD = `UPDATE identifiers SET state = 'held', is_primary = 0, held_until = :until
  WHERE kind = :kind AND value = :value AND account_id = :account`;
const REACTIVATE = `UPDATE identifiers SET state = 'active', held_until = NULL, verified_at = :now
  WHERE kind = :kind AND value = :value AND account_id = :account`;
const DELETE_IDENTIFIER = "DELETE FROM identifiers WHERE kind = :kind AND value = :value";
const SWEEP_HOLDS = "DELETE FROM identifiers WHERE state = 'held' AND held_until <= :now";
// The moved account's old sessions: full JIDs of the old JID (the new JID's sessions are recorded afresh by its
// next request or presence).
// Pending entries about the moved account on any lane (`unbound` and any later account-subject kind) take the
// move's seq: an update id renders its subject's current JID, so an entry rendered after the move must not carry
// an id that was (or could have been) rendered before it with the old JID (docs/REDESIGN.md §2.8.3).
const RESEQUENCE = `UPDATE stream_entries SET seq = :seq WHERE subject_account = :account AND seq < :seq`;
const DROP_RESOURCES = "DELETE FROM resources WHERE account_id = :account AND full_jid LIKE :prefix";

/**
 * Whether an account holds anything of its own that a move into it would have to merge: a card, a binding, a
 * group membership or invitation, book entries, exchange requests or codes, blocks, registered services. These are
 * the features' tables, read here only to refuse (docs/DECISIONS.md: accounts are never merged).
 */
const HAS_DATA = `SELECT
  (SELECT COUNT(*) FROM cards WHERE account_id = :id)
  + (SELECT COUNT(*) FROM bindings WHERE a = :id OR b = :id)
  + (SELECT COUNT(*) FROM group_members WHERE account_id = :id)
  + (SELECT COUNT(*) FROM group_invitations WHERE invitee = :id OR inviter = :id)
  + (SELECT COUNT(*) FROM book_entries WHERE owner = :id)
  + (SELECT COUNT(*) FROM exchange_requests WHERE from_account = :id OR to_account = :id)
  + (SELECT COUNT(*) FROM exchange_codes WHERE owner = :id)
  + (SELECT COUNT(*) FROM blocks WHERE owner = :id OR blocked = :id)
  + (SELECT COUNT(*) FROM service_registrations WHERE account_id = :id) AS n`;

// ------------------------------------------------------------------------------------------------ moves

const MOVE_COLS = "id, account_id, kind, old_value, new_value, state, created_at, expires_at, done_at";
const INSERT_MOVE = `INSERT INTO identity_moves (id, account_id, kind, old_value, new_value, state, created_at,
  expires_at) VALUES (:id, :account, :kind, :old, :new, :state, :now, :expires)`;
const OPEN_MOVES_OF = `SELECT ${MOVE_COLS} FROM identity_moves WHERE account_id = :account
  AND state <> 'done' AND expires_at > :now ORDER BY created_at, id`;
const DELETE_OPEN_MOVES = `DELETE FROM identity_moves WHERE account_id = :account AND kind = :kind
  AND state <> 'done'`;
const OFFER_TO = `SELECT ${MOVE_COLS} FROM identity_moves WHERE kind = 'jid' AND new_value = :new
  AND old_value = :old AND state = 'offered' AND expires_at > :now`;
const MOVE = `SELECT ${MOVE_COLS} FROM identity_moves WHERE id = :id`;
const FINISH_MOVE = `UPDATE identity_moves SET state = 'done', done_at = :now, seq = :seq WHERE id = :id`;
/** Done moves kept per account (history shown in the identifiers list, exported): the oldest beyond go. */
export const MOVES_KEPT = 20;
const PRUNE_MOVES = `DELETE FROM identity_moves WHERE account_id = :account AND state = 'done' AND id NOT IN
  (SELECT id FROM identity_moves WHERE account_id = :account AND state = 'done'
   ORDER BY done_at DESC, id DESC LIMIT ${MOVES_KEPT})`;
const DONE_MOVES_OF = `SELECT ${MOVE_COLS} FROM identity_moves WHERE account_id = :account AND state = 'done'
  ORDER BY done_at DESC, id DESC`;
const SWEEP_MOVES = "DELETE FROM identity_moves WHERE state <> 'done' AND expires_at <= :now";

// --------------------------------------------------------------------------------------------- services

const SERVICE_COLS = `id, account_id, kind, identifier, service, provider, remark, received_at, status, mode,
  update_id, new_identifier, reason, attempts`;
const SERVICE_BY_KEY = `SELECT ${SERVICE_COLS} FROM service_registrations WHERE account_id = :account
  AND kind = :kind AND identifier = :identifier AND service = :service AND provider = :provider`;
const INSERT_SERVICE = `INSERT INTO service_registrations (id, account_id, kind, identifier, service, provider,
  remark, received_at, created_at, status) VALUES (:id, :account, :kind, :identifier, :service, :provider,
  :remark, :received, :now, 'registered')`;
const REFRESH_SERVICE = `UPDATE service_registrations SET remark = :remark, received_at = :received
  WHERE id = :id`;
const COUNT_SERVICES = "SELECT COUNT(*) AS n FROM service_registrations WHERE account_id = :account";
const SERVICES_OF = `SELECT ${SERVICE_COLS} FROM service_registrations WHERE account_id = :account
  ORDER BY kind, identifier, service, provider, id`;
const SERVICE = `SELECT ${SERVICE_COLS} FROM service_registrations WHERE id = :id AND account_id = :account`;
const DELETE_SERVICE = "DELETE FROM service_registrations WHERE id = :id AND account_id = :account";
const SERVICES_UNDER = `SELECT ${SERVICE_COLS} FROM service_registrations WHERE account_id = :account
  AND kind = :kind AND identifier = :identifier AND status NOT IN ('updated', 'done')
  ORDER BY service, provider, id`;
const SERVICES_OF_UPDATE = `SELECT ${SERVICE_COLS} FROM service_registrations WHERE update_id = :update
  ORDER BY service, provider, id`;
const SET_SERVICE = `UPDATE service_registrations SET status = :status, mode = :mode, update_id = :update,
  new_identifier = :newIdentifier, reason = :reason WHERE id = :id`;
const SET_JOB = "UPDATE service_registrations SET job_uid = :uid, attempts = 0 WHERE id = :id";
const JOB_UID = "SELECT uid FROM jobs WHERE id = :id";
const SERVICE_OF_JOB = `SELECT ${SERVICE_COLS} FROM service_registrations WHERE job_uid = :uid`;
const SET_RESULT = `UPDATE service_registrations SET status = :status, reason = :reason, attempts = :attempts
  WHERE id = :id`;
const CLEAR_UPDATE = `UPDATE service_registrations SET status = 'registered', mode = NULL, update_id = NULL,
  new_identifier = NULL, reason = NULL WHERE update_id = :update AND status IN ('registered', 'manual')`;

const UPDATE_COLS = "id, account_id, kind, old_value, new_value, state, created_at";
const INSERT_UPDATE = `INSERT INTO service_updates (id, account_id, kind, old_value, new_value, state,
  created_at) VALUES (:id, :account, :kind, :old, :new, 'confirming', :now)`;
const OPEN_UPDATES_OF = `SELECT ${UPDATE_COLS} FROM service_updates WHERE account_id = :account
  AND state = 'confirming'`;
const UPDATE = `SELECT ${UPDATE_COLS} FROM service_updates WHERE id = :id AND account_id = :account`;
const DELETE_UPDATE = "DELETE FROM service_updates WHERE id = :id";
const CONFIRM_UPDATE = `UPDATE service_updates SET state = 'confirmed', confirmed_at = :now WHERE id = :id
  AND state = 'confirming'`;
/** Finished update requests kept per account; older ones (and their items' link to them) go. */
export const UPDATES_KEPT = 20;
const PRUNE_UPDATES = `DELETE FROM service_updates WHERE account_id = :account AND state = 'confirmed'
  AND id NOT IN (SELECT id FROM service_updates WHERE account_id = :account AND state = 'confirmed'
  ORDER BY confirmed_at DESC, id DESC LIMIT ${UPDATES_KEPT})`;

// ------------------------------------------------------------------------------------------------ rows

interface CodeDb {
  account_id: number;
  kind: string;
  value: string;
  purpose: string;
  move_id: string | null;
  code_hash: string;
  attempts_left: number;
  expires_at: number;
}
interface MoveDb {
  id: string;
  account_id: number;
  kind: string;
  old_value: string;
  new_value: string;
  state: string;
  created_at: number;
  expires_at: number;
  done_at: number | null;
}
interface ServiceDb {
  id: string;
  account_id: number;
  kind: string;
  identifier: string;
  service: string;
  provider: string;
  remark: string;
  received_at: number;
  status: string;
  mode: string | null;
  update_id: string | null;
  new_identifier: string | null;
  reason: string | null;
  attempts: number;
}
interface UpdateDb {
  id: string;
  account_id: number;
  kind: string;
  old_value: string;
  new_value: string;
  state: string;
  created_at: number;
}

const toCode = (r: CodeDb): CodeRow => ({
  account: Number(r.account_id) as AccountId,
  kind: r.kind as CodeRow["kind"],
  value: r.value,
  purpose: r.purpose as CodePurpose,
  ...(r.move_id === null ? {} : { moveId: r.move_id }),
  codeHash: r.code_hash,
  attemptsLeft: Number(r.attempts_left),
  expiresAt: Number(r.expires_at),
});
const toMove = (r: MoveDb): MoveRow => ({
  id: r.id,
  account: Number(r.account_id) as AccountId,
  kind: r.kind as IdentifierKind,
  oldValue: r.old_value,
  newValue: r.new_value,
  state: r.state as MoveState,
  createdAt: Number(r.created_at),
  expiresAt: Number(r.expires_at),
  ...(r.done_at === null ? {} : { doneAt: Number(r.done_at) }),
});
const toService = (r: ServiceDb): ServiceRow => ({
  id: r.id,
  account: Number(r.account_id) as AccountId,
  kind: r.kind as IdentifierKind,
  identifier: r.identifier,
  service: r.service,
  provider: r.provider,
  remark: r.remark,
  receivedAt: Number(r.received_at),
  status: r.status as ServiceStatus,
  ...(r.mode === null ? {} : { mode: r.mode as "automatic" | "manual" }),
  ...(r.update_id === null ? {} : { updateId: r.update_id }),
  ...(r.new_identifier === null ? {} : { newIdentifier: r.new_identifier }),
  ...(r.reason === null ? {} : { reason: r.reason }),
  attempts: Number(r.attempts),
});
const toUpdate = (r: UpdateDb): UpdateRow => ({
  id: r.id,
  account: Number(r.account_id) as AccountId,
  kind: r.kind as IdentifierKind,
  oldValue: r.old_value,
  newValue: r.new_value,
  state: r.state as UpdateRow["state"],
  createdAt: Number(r.created_at),
});

const n = async (q: Sql, sql: string, p: Params): Promise<number> =>
  Number((await q.get<{ n: number }>(sql, p))?.n ?? 0);

export const identityRepo = (q: Sql) => ({
  // --- codes
  async putCode(c: CodeRow, now: number): Promise<void> {
    await q.run(UPSERT_CODE, {
      account: c.account,
      kind: c.kind,
      value: c.value,
      purpose: c.purpose,
      move: c.moveId ?? null,
      hash: c.codeHash,
      attempts: c.attemptsLeft,
      expires: c.expiresAt,
      now,
    });
  },
  async code(account: AccountId, kind: string, value: string, purpose: CodePurpose) {
    const r = await q.get<CodeDb>(CODE, { account, kind, value, purpose });
    return r && toCode(r);
  },
  async codesOf(account: AccountId, now: number): Promise<CodeRow[]> {
    return (await q.all<CodeDb>(CODES_OF, { account, now })).map(toCode);
  },
  countOtherOpenCodes(account: AccountId, kind: string, value: string, purpose: CodePurpose, now: number) {
    return n(q, COUNT_OPEN_CODES, { account, kind, value, purpose, now });
  },
  async spendAttempt(account: AccountId, kind: string, value: string, purpose: CodePurpose): Promise<void> {
    await q.run(SPEND_ATTEMPT, { account, kind, value, purpose });
  },
  async deleteCode(account: AccountId, kind: string, value: string, purpose: CodePurpose): Promise<void> {
    await q.run(DELETE_CODE, { account, kind, value, purpose });
  },
  async sweep(now: number): Promise<number> {
    return (
      (await q.run(SWEEP_CODES, { now })).changes +
      (await q.run(SWEEP_MOVES, { now })).changes +
      (await q.run(SWEEP_HOLDS, { now })).changes
    );
  },

  // --- identifiers
  countIdentifiers(account: AccountId, now: number): Promise<number> {
    return n(q, COUNT_IDENTIFIERS, { account, now });
  },
  async hold(account: AccountId, kind: IdentifierKind, value: string, until: number): Promise<void> {
    await q.run(HOLD, { account, kind, value, until });
  },
  async reactivate(account: AccountId, kind: IdentifierKind, value: string, now: number): Promise<void> {
    await q.run(REACTIVATE, { account, kind, value, now });
  },
  async deleteIdentifier(kind: IdentifierKind, value: string): Promise<void> {
    await q.run(DELETE_IDENTIFIER, { kind, value });
  },
  async dropResources(account: AccountId, bare: string): Promise<void> {
    await q.run(DROP_RESOURCES, { account, prefix: `${bare}/%` });
  },
  async resequenceAbout(account: AccountId, seq: number): Promise<void> {
    await q.run(RESEQUENCE, { account, seq });
  },
  async hasData(id: AccountId): Promise<boolean> {
    return (await n(q, HAS_DATA, { id })) > 0;
  },

  // --- moves
  async insertMove(m: Omit<MoveRow, "createdAt" | "doneAt">, now: number): Promise<void> {
    await q.run(INSERT_MOVE, {
      id: m.id,
      account: m.account,
      kind: m.kind,
      old: m.oldValue,
      new: m.newValue,
      state: m.state,
      now,
      expires: m.expiresAt,
    });
  },
  async openMoves(account: AccountId, now: number): Promise<MoveRow[]> {
    return (await q.all<MoveDb>(OPEN_MOVES_OF, { account, now })).map(toMove);
  },
  async doneMoves(account: AccountId): Promise<MoveRow[]> {
    return (await q.all<MoveDb>(DONE_MOVES_OF, { account })).map(toMove);
  },
  async deleteOpenMoves(account: AccountId, kind: IdentifierKind): Promise<void> {
    await q.run(DELETE_OPEN_MOVES, { account, kind });
  },
  async offerTo(oldJid: string, newJid: string, now: number): Promise<MoveRow | undefined> {
    const r = await q.get<MoveDb>(OFFER_TO, { old: oldJid, new: newJid, now });
    return r && toMove(r);
  },
  async move(id: string): Promise<MoveRow | undefined> {
    const r = await q.get<MoveDb>(MOVE, { id });
    return r && toMove(r);
  },
  async finishMove(account: AccountId, id: string, seq: number, now: number): Promise<void> {
    await q.run(FINISH_MOVE, { id, seq, now });
    await q.run(PRUNE_MOVES, { account });
  },

  // --- services
  async serviceByKey(
    account: AccountId,
    k: { kind: string; identifier: string; service: string; provider: string },
  ): Promise<ServiceRow | undefined> {
    const r = await q.get<ServiceDb>(SERVICE_BY_KEY, { account, ...k });
    return r && toService(r);
  },
  async insertService(
    s: Pick<
      ServiceRow,
      "id" | "account" | "kind" | "identifier" | "service" | "provider" | "remark" | "receivedAt"
    >,
    now: number,
  ): Promise<void> {
    await q.run(INSERT_SERVICE, {
      id: s.id,
      account: s.account,
      kind: s.kind,
      identifier: s.identifier,
      service: s.service,
      provider: s.provider,
      remark: s.remark,
      received: s.receivedAt,
      now,
    });
  },
  async refreshService(id: string, remark: string, received: number): Promise<void> {
    await q.run(REFRESH_SERVICE, { id, remark, received });
  },
  countServices(account: AccountId): Promise<number> {
    return n(q, COUNT_SERVICES, { account });
  },
  async services(account: AccountId): Promise<ServiceRow[]> {
    return (await q.all<ServiceDb>(SERVICES_OF, { account })).map(toService);
  },
  async service(account: AccountId, id: string): Promise<ServiceRow | undefined> {
    const r = await q.get<ServiceDb>(SERVICE, { account, id });
    return r && toService(r);
  },
  async deleteService(account: AccountId, id: string): Promise<boolean> {
    return (await q.run(DELETE_SERVICE, { account, id })).changes > 0;
  },
  async servicesUnder(account: AccountId, kind: IdentifierKind, identifier: string): Promise<ServiceRow[]> {
    return (await q.all<ServiceDb>(SERVICES_UNDER, { account, kind, identifier })).map(toService);
  },
  async servicesOfUpdate(update: string): Promise<ServiceRow[]> {
    return (await q.all<ServiceDb>(SERVICES_OF_UPDATE, { update })).map(toService);
  },
  async setService(
    id: string,
    s: Pick<ServiceRow, "status" | "mode" | "updateId" | "newIdentifier" | "reason">,
  ): Promise<void> {
    await q.run(SET_SERVICE, {
      id,
      status: s.status,
      mode: s.mode ?? null,
      update: s.updateId ?? null,
      newIdentifier: s.newIdentifier ?? null,
      reason: s.reason ?? null,
    });
  },

  /** Links the item to its provider call (the job's uid, read back from the row the queue just wrote). */
  async setJob(id: string, jobId: number): Promise<void> {
    const r = await q.get<{ uid: string }>(JOB_UID, { id: jobId });
    if (!r) throw new Error(`identity: job ${jobId} not found in its own unit of work`);
    await q.run(SET_JOB, { id, uid: r.uid });
  },
  async serviceOfJob(uid: string): Promise<ServiceRow | undefined> {
    const r = await q.get<ServiceDb>(SERVICE_OF_JOB, { uid });
    return r && toService(r);
  },
  async setResult(id: string, status: ServiceStatus, reason: string | null, attempts: number): Promise<void> {
    await q.run(SET_RESULT, { id, status, reason, attempts });
  },

  // --- update requests
  async insertUpdate(u: Omit<UpdateRow, "state" | "createdAt">, now: number): Promise<void> {
    await q.run(INSERT_UPDATE, {
      id: u.id,
      account: u.account,
      kind: u.kind,
      old: u.oldValue,
      new: u.newValue,
      now,
    });
  },
  async openUpdates(account: AccountId): Promise<UpdateRow[]> {
    return (await q.all<UpdateDb>(OPEN_UPDATES_OF, { account })).map(toUpdate);
  },
  async update(account: AccountId, id: string): Promise<UpdateRow | undefined> {
    const r = await q.get<UpdateDb>(UPDATE, { account, id });
    return r && toUpdate(r);
  },
  /** An unconfirmed update replaced by a newer one: its items go back to plain registrations. */
  async dropUpdate(id: string): Promise<void> {
    await q.run(CLEAR_UPDATE, { update: id });
    await q.run(DELETE_UPDATE, { id });
  },
  async confirmUpdate(account: AccountId, id: string, now: number): Promise<boolean> {
    const done = (await q.run(CONFIRM_UPDATE, { id, now })).changes > 0;
    await q.run(PRUNE_UPDATES, { account });
    return done;
  },
});

export type IdentityRepo = ReturnType<typeof identityRepo>;

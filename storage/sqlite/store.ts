import type { DeleteUserResult, OutboxItem, Store, UserRows } from "../store.js";
import { migrate, openDatabase, type Db, type MigrationReport } from "./db.js";
import { SqlitePush } from "./push.js";
import { deleteUser, userRows } from "./userdata.js";
import { SqliteCards, SqliteDevices, SqliteExchange, SqliteOutbox, SqlitePresence } from "./repos.js";

export class SqliteStore implements Store {
  readonly db: Db;
  readonly migrations: MigrationReport;
  readonly outbox: SqliteOutbox;
  readonly devices: SqliteDevices;
  readonly cards: SqliteCards;
  readonly exchange: SqliteExchange;
  readonly presence: SqlitePresence;
  readonly push: SqlitePush;

  constructor(file: string) {
    this.db = openDatabase(file);
    this.migrations = migrate(this.db);
    this.outbox = new SqliteOutbox(this.db);
    this.devices = new SqliteDevices(this.db);
    this.cards = new SqliteCards(this.db, this.outbox);
    this.exchange = new SqliteExchange(this.db, this.outbox);
    this.presence = new SqlitePresence(this.db);
    this.push = new SqlitePush(this.db);
  }

  async userRows(jid: string): Promise<UserRows> {
    return userRows(this.db, jid);
  }

  async deleteUser(jid: string, notify: (peers: string[]) => OutboxItem[]): Promise<DeleteUserResult> {
    return deleteUser(this.db, this.outbox, jid, notify);
  }

  async schemaVersion(): Promise<number> {
    return this.migrations.current;
  }

  async ping(): Promise<void> {
    this.db.prepare("SELECT count(*) FROM schema_migrations").get();
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}

/**
 * The storage interface every handler uses. Methods are async and each one is atomic on its own, so a second
 * backend (PostgreSQL with BEGIN/COMMIT) can implement it without touching handlers. The SQLite backend
 * (storage/sqlite/) runs them synchronously inside one transaction each and returns settled promises.
 */
export interface Store {
  /** Schema version after migrations. */
  schemaVersion(): Promise<number>;
  close(): Promise<void>;
}

/**
 * Schema history. Append only: a released migration is never edited, a change is a new version.
 * Each feature owns its tables; versions are grouped by hundreds per feature to keep merges painless.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: "core",
    sql: `
      CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      -- One global, monotonic change counter: sync tokens and outbox order both come from it.
      INSERT INTO meta (key, value) VALUES ('seq', '0');
    `,
  },
];

/**
 * The stream contract (stream.contract.ts, cases 21–34) on PostgreSQL: the same file as on SQLite, against a
 * throwaway cluster (test/harness/postgres.ts), one fresh database per case; cases 31–32 open a second
 * PostgresStore (its own pool: another process's view) on the same database.
 * The schema is migration 2000's PostgreSQL baseline (storage/postgres/schema-2000.ts), applied through
 * Store.migrate as on SQLite.
 */
import pg from "pg";
import { PostgresStore, WRITERS_GATE_KEY } from "../../storage/postgres/store.js";
import { SCHEMA_2000 } from "../../storage/sqlite/schema-2000.js";
import { startPostgres, type PostgresServer } from "../harness/postgres.js";
import { describeStream } from "./stream.contract.js";
import type { StoreFactory } from "./uow.contract.js";

let server: PostgresServer | undefined;
const cluster = async (): Promise<PostgresServer> => (server ??= await startPostgres());

const postgres: StoreFactory = {
  async create() {
    const url = await (await cluster()).createDatabase();
    return {
      open: async (o = {}) => new PostgresStore({ ...o, connection: { url, poolSize: 4 } }),
      lockFromOutside: async () => {
        const other = new pg.Client({ connectionString: url });
        await other.connect();
        await other.query(`SELECT pg_advisory_lock(${WRITERS_GATE_KEY})`);
        return async () => {
          await other.end();
        };
      },
    };
  },
  async cleanup() {
    await server?.dropDatabases();
  },
};

describe("PostgreSQL backend: the stream", function () {
  this.timeout(60_000);
  before(async () => {
    await cluster();
  });
  after(async () => {
    await server?.stop();
    server = undefined;
  });

  describeStream("postgres", postgres, [SCHEMA_2000]);
});

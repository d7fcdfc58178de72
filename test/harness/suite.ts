/**
 * The common shape of an integration suite: one real XMPP server (Prosody, or ejabberd with
 * CARDLINK_TEST_SERVER=ejabberd) with the given users (password "<user>pw"), one in-process cardlink configured
 * for it, both started before the suite and torn down after it, even on failure.
 */
import type { Cardlink } from "../../component/runtime/app.js";
import { startInProcess, testConfig } from "./cardlink.js";
import { connectClient, type TestClient } from "./clients.js";
import { newXmppServer, type ServerOptions, type XmppServer } from "./server.js";

export interface Servers {
  /** The run's XMPP server (the name is historical: it is ejabberd in an ejabberd run). */
  prosody: XmppServer;
  /** The running cardlink (valid inside tests and hooks, after the suite's before()). */
  app(): Cardlink;
  jid(user: string): string;
  /** A plain @xmpp/client session for `user` (no cardlink protocol handling). */
  login(user: string, resource?: string): Promise<TestClient>;
}

export function useServers(
  users: string[],
  overrides: () => object | Promise<object> = () => ({}),
  opts: ServerOptions = {},
): Servers {
  const prosody = newXmppServer(opts);
  let app: Cardlink | undefined;
  before(async () => {
    await prosody.start();
    await prosody.createUsers(users.map((u) => ({ user: u, password: `${u}pw` })));
    app = await startInProcess(testConfig(prosody, await overrides()));
  });
  after(async () => {
    await app?.stop();
    await prosody.stop();
    prosody.cleanup();
  });
  return {
    prosody,
    app: () => {
      if (!app) throw new Error("cardlink is not started yet");
      return app;
    },
    jid: (u) => `${u}@${prosody.host}`,
    login: (user, resource = "test") =>
      connectClient({
        port: prosody.c2sPort,
        domain: prosody.host,
        username: user,
        password: `${user}pw`,
        resource,
      }),
  };
}

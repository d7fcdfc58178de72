import { expect } from "chai";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ConfigError, loadConfig } from "../../component/runtime/config.js";
import type { ApnsConfig } from "../../push/apns.js";
import type { FcmConfig } from "../../push/fcm.js";
import type { DatabaseConfig } from "../../storage/index.js";

describe("config", () => {
  const file = (o: unknown): string => {
    const f = path.join(mkdtempSync(path.join(os.tmpdir(), "cardlink-cfg-")), "c.json");
    writeFileSync(f, JSON.stringify(o));
    return f;
  };

  it("merges defaults, file and environment (environment wins)", () => {
    const c = loadConfig({
      file: file({
        secret: "from-file",
        domain: "cards.example.org",
        servedHosts: ["example.org"],
        card: { maxBytes: 80_000 },
      }),
      env: { CARDLINK_SECRET: "from-env", CARDLINK_ADMINS: "a@example.org, b@example.org" },
    });
    expect(c.secret).to.equal("from-env");
    expect(c.domain).to.equal("cards.example.org");
    expect(c.card.maxBytes).to.equal(80_000);
    expect(c.card.maxPhotoBytes).to.equal(64 * 1024);
    expect(c.allowedDomains).to.deep.equal(["example.org"]);
    expect(c.admins).to.deep.equal(["a@example.org", "b@example.org"]);
    expect(c.database.path).to.match(/cardlink\.sqlite$/);
    expect(Object.isFrozen(c)).to.equal(true);
  });

  it("refuses typos, wrong types, bad bounds and a missing secret with a message naming the setting", () => {
    const cases: Array<[object, RegExp]> = [
      [{ secret: "s", sercet: "x" }, /unknown setting 'sercet'/],
      [{ secret: "s", card: { maxBytse: 1 } }, /unknown setting 'card.maxBytse'/],
      [{ secret: "s", iqTimeoutMs: "10" }, /iqTimeoutMs' must be a number/],
      [{ secret: "s", servedHosts: "example.org" }, /servedHosts' must be an array/],
      [{ secret: "s", iqTimeoutMs: 5 }, /iqTimeoutMs must be between/],
      [{ secret: "s", service: "localhost:5347" }, /service 'localhost:5347'/],
      [{}, /secret is empty/],
      [{ secret: "s", servedHosts: null }, /servedHosts' must be an array/],
      [{ secret: "s", admins: [1] }, /admins' must be an array of strings/],
      [
        { secret: "s", push: { policy: { ios: "alerts" } } },
        /push.policy.ios must be alert, background or none/,
      ],
      [{ secret: "s", push: { retryBaseMs: 5000, retryMaxMs: 100 } }, /push.retryBaseMs/],
      [{ secret: "s", card: { maxBytes: 1000, maxPhotoBytes: 2000 } }, /maxPhotoBytes must be below/],
    ];
    for (const [o, re] of cases) {
      expect(() => loadConfig({ file: file(o), env: {} }), JSON.stringify(o)).to.throw(ConfigError, re);
    }
  });

  it("link.stanzaLimitBytes: default 512 KiB, bounded, settable by CARDLINK_STANZA_LIMIT", () => {
    expect(loadConfig({ file: file({ secret: "s" }), env: {} }).link.stanzaLimitBytes).to.equal(512 * 1024);
    const env = loadConfig({ file: file({ secret: "s" }), env: { CARDLINK_STANZA_LIMIT: "1048576" } });
    expect(env.link.stanzaLimitBytes).to.equal(1024 * 1024);
    for (const v of [1024, 32 * 1024 * 1024, 600_000.5]) {
      expect(() =>
        loadConfig({ file: file({ secret: "s", link: { stanzaLimitBytes: v } }), env: {} }),
      ).to.throw(ConfigError, /link.stanzaLimitBytes must be/);
    }
  });

  it("refuses at start-up a card limit that cannot fit in one stanza, naming both settings", () => {
    // 96 KiB cards fit in the default 512 KiB link; under a 64 KiB link they cannot.
    const small = { secret: "s", link: { stanzaLimitBytes: 64 * 1024 } };
    expect(() => loadConfig({ file: file(small), env: {} })).to.throw(
      ConfigError,
      /card.maxBytes \(98304\) does not fit in one stanza under link.stanzaLimitBytes \(65536\).*largest card is 32768 bytes/,
    );
    // A 1 MiB card needs a link of 1 MiB plus envelope and wrapper reserves.
    const big = { secret: "s", card: { maxBytes: 1024 * 1024 } };
    expect(() => loadConfig({ file: file(big), env: {} })).to.throw(ConfigError, /card.maxBytes/);
    const ok = loadConfig({
      file: file({ ...big, link: { stanzaLimitBytes: 1024 * 1024 + 32 * 1024 } }),
      env: {},
    });
    expect(ok.card.maxBytes).to.equal(1024 * 1024);
    // The largest card that fits is accepted exactly at the boundary.
    const edge = loadConfig({
      file: file({
        secret: "s",
        link: { stanzaLimitBytes: 64 * 1024 },
        card: { maxBytes: 32 * 1024, maxPhotoBytes: 1024 },
      }),
      env: {},
    });
    expect(edge.card.maxBytes).to.equal(32 * 1024);
    expect(() =>
      loadConfig({
        file: file({
          secret: "s",
          link: { stanzaLimitBytes: 64 * 1024 },
          card: { maxBytes: 32 * 1024 + 1, maxPhotoBytes: 1024 },
        }),
        env: {},
      }),
    ).to.throw(ConfigError, /card.maxBytes \(32769\)/);
  });

  it("accepts provider settings under push.apns / push.fcm as given", () => {
    const c = loadConfig({
      file: file({
        secret: "s",
        push: { apns: { production: true, token: { key: "k.p8", keyId: "K", teamId: "T" } } },
      }),
      env: {},
    });
    expect(c.push.apns).to.deep.equal({ production: true, token: { key: "k.p8", keyId: "K", teamId: "T" } });
    expect(c.push.fcm).to.equal(undefined);
  });

  it("checks the provider sections against their schema, naming the full key", () => {
    const apns = (a: object): object => ({ secret: "s", push: { apns: a } });
    const token = { key: "k.p8", keyId: "K", teamId: "T" };
    const cases: Array<[object, RegExp]> = [
      [apns({ production: "yes", token }), /^push\.apns\.production must be true or false$/],
      [apns({ token }), /^push\.apns\.production must be true or false$/],
      [apns({ production: true }), /^push\.apns needs token \{key, keyId, teamId\} or cert \+ key$/],
      [
        apns({ production: true, token: { key: "k.p8", keyId: "", teamId: "T" } }),
        /^push\.apns\.token\.keyId is required$/,
      ],
      [apns({ production: true, cert: "c.pem" }), /^push\.apns\.key is required with push\.apns\.cert$/],
      [apns({ production: true, token, tokn: 1 }), /^unknown setting 'push\.apns\.tokn'$/],
      [
        apns({ production: true, token, port: 70000 }),
        /^push\.apns\.port must be a whole number between 1 and 65535$/,
      ],
      [
        apns({ production: true, token, connections: "2" }),
        /^setting 'push\.apns\.connections' must be a number$/,
      ],
      [{ secret: "s", push: { fcm: {} } }, /^push\.fcm\.serviceAccount is required$/],
      [{ secret: "s", push: { fcm: { serviceAccount: "" } } }, /^push\.fcm\.serviceAccount is required$/],
      [
        { secret: "s", push: { fcm: { serviceAccount: "sa.json", batchSize: 501 } } },
        /^push\.fcm\.batchSize must be a whole number between 1 and 500$/,
      ],
      [
        { secret: "s", push: { fcm: { serviceAccount: "sa.json", dataOnlyForBackground: false } } },
        /^push\.fcm\.dataOnlyForBackground can only be true$/,
      ],
      [{ secret: "s", push: { fcm: "sa.json" } }, /^setting 'push\.fcm' must be an object$/],
    ];
    for (const [o, re] of cases) {
      expect(() => loadConfig({ file: file(o), env: {} }), JSON.stringify(o)).to.throw(ConfigError, re);
    }
    // null switches a provider off, like leaving it out; a cert with its key is certificate auth.
    const off = loadConfig({ file: file({ secret: "s", push: { apns: null, fcm: null } }), env: {} });
    expect(off.push.apns).to.equal(undefined);
    expect(off.push.fcm).to.equal(undefined);
    const cert = loadConfig({
      file: file(apns({ production: false, cert: "c.pem", key: "k.pem" })),
      env: {},
    });
    expect(cert.push.apns).to.deep.equal({ production: false, cert: "c.pem", key: "k.pem" });
    // Compile-time half of the check: what the schema lets through is what the providers and the store read.
    const asRead: { apns?: ApnsConfig; fcm?: FcmConfig; database: DatabaseConfig } = {
      ...cert.push,
      database: cert.database,
    };
    expect(asRead.apns?.production).to.equal(false);
  });

  it("reports every wrong setting at once, unknown keys first, and checks related settings by name", () => {
    expect(() =>
      loadConfig({ file: file({ secret: "s", iqTimeoutMs: 5, domain: "a b", sercet: "x" }), env: {} }),
    ).to.throw(
      ConfigError,
      /^unknown setting 'sercet'; domain 'a b' is not a domain name; iqTimeoutMs must be between 100 and 600000$/,
    );
    expect(() =>
      loadConfig({ file: file({ secret: "s", delivery: { retryBaseMs: 9000, retryMaxMs: 1000 } }), env: {} }),
    ).to.throw(ConfigError, /^delivery\.retryMaxMs must be ≥ delivery\.retryBaseMs$/);
    expect(() =>
      loadConfig({
        file: file({ secret: "s", reconnect: { initialDelayMs: 5000, maxDelayMs: 1000 } }),
        env: {},
      }),
    ).to.throw(ConfigError, /^reconnect\.maxDelayMs must be ≥ reconnect\.initialDelayMs$/);
    // A variable's text is checked like a file's value, under the setting's name.
    expect(() => loadConfig({ env: { CARDLINK_SECRET: "s", CARDLINK_METRICS_PORT: "port" } })).to.throw(
      ConfigError,
      /^setting 'metricsPort' must be a number$/,
    );
    expect(() => loadConfig({ env: { CARDLINK_SECRET: "s", CARDLINK_LOG_LEVEL: "loud" } })).to.throw(
      ConfigError,
      /^log\.level must be one of trace, debug, info, warn, error, fatal, silent$/,
    );
    // An explicit empty list is refused like a missing one.
    expect(() => loadConfig({ file: file({ secret: "s", servedHosts: [] }), env: {} })).to.throw(
      ConfigError,
      /^servedHosts must name at least one Prosody host$/,
    );
  });

  it("defaults the data directory to $STATE_DIRECTORY (systemd), else /var/lib/cardlink: never the working directory", () => {
    const sd = loadConfig({
      env: { CARDLINK_SECRET: "s", STATE_DIRECTORY: "/var/lib/cardlink-test:/other" },
    });
    expect(sd.dataDir).to.equal("/var/lib/cardlink-test");
    expect(sd.database.path).to.equal("/var/lib/cardlink-test/cardlink.sqlite");
    const plain = loadConfig({ env: { CARDLINK_SECRET: "s" } });
    expect(plain.dataDir).to.equal("/var/lib/cardlink");
    // A relative STATE_DIRECTORY is not systemd's: ignored rather than resolved against the working directory.
    expect(loadConfig({ env: { CARDLINK_SECRET: "s", STATE_DIRECTORY: "run/data" } }).dataDir).to.equal(
      "/var/lib/cardlink",
    );
    // An explicit setting still wins (the quick start sets its own).
    expect(loadConfig({ env: { CARDLINK_SECRET: "s", CARDLINK_DATA_DIR: "/tmp/q" } }).database.path).to.equal(
      "/tmp/q/cardlink.sqlite",
    );
  });

  it("takes a metrics address (loopback by default) and refuses one that is not an IP address", () => {
    expect(loadConfig({ env: { CARDLINK_SECRET: "s" } }).metricsAddress).to.equal("127.0.0.1");
    expect(
      loadConfig({ env: { CARDLINK_SECRET: "s", CARDLINK_METRICS_ADDRESS: "::1" } }).metricsAddress,
    ).to.equal("::1");
    expect(() =>
      loadConfig({ file: file({ secret: "s", metricsAddress: "example.org" }), env: {} }),
    ).to.throw(ConfigError, /metricsAddress 'example.org' must be an IP address/);
  });

  it("loads docs/config.example.json as shipped, with the secret from the environment as documented", () => {
    const c = loadConfig({ file: "docs/config.example.json", env: { CARDLINK_SECRET: "s" } });
    expect(c.domain).to.equal("cards.example.org");
    expect(c.metricsPort).to.equal(9347);
    expect(c.metricsAddress).to.equal("127.0.0.1");
    expect(path.isAbsolute(c.database.path)).to.equal(true);
    // Without the secret it does not start: the file holds none on purpose.
    expect(() => loadConfig({ file: "docs/config.example.json", env: {} })).to.throw(
      ConfigError,
      /secret is empty/,
    );
  });
  it("queue.leaseMs: an unset lease follows a long ack timeout; a written one below it is refused, naming both", () => {
    const over = (o: object) => loadConfig({ env: { CARDLINK_SECRET: "s" }, overrides: o });
    expect(over({}).queue.leaseMs).to.equal(30_000);
    expect(over({ delivery: { ackTimeoutMs: 60_000 } }).queue.leaseMs).to.equal(65_000);
    expect(() => over({ delivery: { ackTimeoutMs: 60_000 }, queue: { leaseMs: 30_000 } })).to.throw(
      ConfigError,
      "queue.leaseMs must be ≥ delivery.ackTimeoutMs + 5000",
    );
    expect(over({ queue: { leaseMs: 20_000 } }).queue.leaseMs).to.equal(20_000);
  });
});

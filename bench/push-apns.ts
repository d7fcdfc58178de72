/**
 * Benchmark: N notices to the local APNs stand-in through ApnsSender (node-apn) vs a raw node:http2 client that
 * sends the same requests over the same number of sessions with the same concurrency (everything in flight)
 * and one ES256 JWT. Rounds alternate raw / node-apn on warmed connections. By default the stand-in runs in a
 * worker thread of this process, so that its work does not share the clients' event loop.
 *
 *   node dist/bench/push-apns.js   → one JSON object on stdout
 */
import { randomUUID, sign } from "node:crypto";
import { readFile } from "node:fs/promises";
import http2 from "node:http2";
import { fileURLToPath } from "node:url";
import { isMainThread } from "node:worker_threads";
import { ApnsSender, buildApnsRequest } from "../push/apns.js";
import type { PushNotice } from "../push/types.js";
import { serveFromWorker, startInWorker, workerRole, type Service } from "./lib.js";
import { start as startStandin } from "../test/standins/apns-standin.js";

export interface BenchOptions {
  notices?: number;
  rounds?: number;
  /** HTTP/2 sessions for both clients. */
  connections?: number;
  /** "worker" (default): stand-in in a worker thread; "inline": on the main event loop. */
  standin?: "worker" | "inline";
}

interface StandinInfo {
  address: string;
  port: number;
  caPath: string;
  tokenKeyPath: string;
  keyId: string;
  teamId: string;
}

const TOPIC = "com.example.cardlink";

async function startInline(): Promise<Service<StandinInfo>> {
  const s = await startStandin({ record: false });
  return {
    info: {
      address: s.address,
      port: s.port,
      caPath: s.caPath,
      tokenKeyPath: s.tokenKeyPath,
      keyId: s.keyId,
      teamId: s.teamId,
    },
    stop: () => s.stop(),
  };
}

function startWorker(): Promise<Service<StandinInfo>> {
  return startInWorker<StandinInfo>(import.meta.url, "standin");
}

function makeNotices(n: number): PushNotice[] {
  const out: PushNotice[] = [];
  for (let i = 0; i < n; i++) {
    const token = (i.toString(16).padStart(8, "0") + "ab".repeat(28)).slice(0, 64);
    out.push({
      id: randomUUID(),
      platform: "ios",
      token,
      kind: i % 4 === 0 ? "background" : "alert",
      collapseId: `card-${i % 100}`,
      expiresAt: Math.floor(Date.now() / 1000) + 3600,
      alert: { title: "Cardlink", body: "A contact card was updated" },
      data: { ref: `r${i}` },
    });
  }
  return out;
}

/** The JWT node-apn would send: ES256, kid = key id, iss = team id, iat = now. */
function makeJwt(keyPem: Buffer, keyId: string, teamId: string): string {
  const enc = (o: object): string => Buffer.from(JSON.stringify(o)).toString("base64url");
  const head = enc({ alg: "ES256", typ: "JWT", kid: keyId });
  const claims = enc({ iat: Math.floor(Date.now() / 1000), iss: teamId });
  const sig = sign("sha256", Buffer.from(`${head}.${claims}`), { key: keyPem, dsaEncoding: "ieee-p1363" });
  return `${head}.${claims}.${sig.toString("base64url")}`;
}

class RawClient {
  private readonly sessions: http2.ClientHttp2Session[] = [];
  private next = 0;

  constructor(
    private readonly info: StandinInfo,
    private readonly ca: Buffer,
    private readonly jwt: string,
    count: number,
  ) {
    for (let i = 0; i < count; i++) {
      const s = http2.connect(`https://${info.address}:${info.port}`, { ca: this.ca });
      s.on("error", () => undefined);
      this.sessions.push(s);
    }
  }

  /** Sends all notices at once; resolves with the number answered 200. */
  async send(notices: PushNotice[]): Promise<number> {
    const all = notices.map(
      (notice) =>
        new Promise<boolean>((resolve) => {
          const req = buildApnsRequest(notice, TOPIC);
          if (!req.ok) return resolve(false);
          const session = this.sessions[this.next] as http2.ClientHttp2Session;
          this.next = (this.next + 1) % this.sessions.length;
          const stream = session.request({
            ":method": "POST",
            ":scheme": "https",
            ":authority": this.info.address,
            ":path": `/3/device/${notice.token}`,
            authorization: `bearer ${this.jwt}`,
            ...req.headers,
          });
          let status = 0;
          stream.on("response", (h) => {
            status = Number(h[":status"]);
          });
          // Read the body like a real client would (errors carry a JSON reason).
          stream.setEncoding("utf8");
          stream.on("data", () => undefined);
          stream.on("end", () => resolve(status === 200));
          stream.on("error", () => resolve(false));
          stream.end(req.body);
        }),
    );
    return (await Promise.all(all)).filter(Boolean).length;
  }

  close(): void {
    for (const s of this.sessions) s.close();
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

export async function run(opts: BenchOptions = {}): Promise<object> {
  const n = opts.notices ?? 5000;
  const rounds = opts.rounds ?? 3;
  const connections = opts.connections ?? 2;
  const mode = opts.standin ?? "worker";
  const standin = mode === "worker" ? await startWorker() : await startInline();
  const info = standin.info;
  const ca = await readFile(info.caPath);
  const key = await readFile(info.tokenKeyPath);

  const raw = new RawClient(info, ca, makeJwt(key, info.keyId, info.teamId), connections);
  const sender = new ApnsSender({
    token: { key: info.tokenKeyPath, keyId: info.keyId, teamId: info.teamId },
    production: false,
    address: info.address,
    port: info.port,
    ca: info.caPath,
    connections,
    requestTimeoutMs: 30_000,
    defaultTopic: TOPIC,
  });
  const rawRuns: number[] = [];
  const apnRuns: number[] = [];
  // Whole-process CPU (both clients' loop and the stand-in worker): less sensitive to other load than wall time.
  const rawCpu: number[] = [];
  const apnCpu: number[] = [];
  const cpuPerNotice = (since: NodeJS.CpuUsage, count: number): number => {
    const d = process.cpuUsage(since);
    return (d.user + d.system) / count;
  };
  try {
    // Warm-up: connect every session, JIT both paths.
    const warm = makeNotices(n);
    await raw.send(warm);
    await sender.send(warm);

    for (let r = 0; r < rounds; r++) {
      const notices = makeNotices(n);
      let t = process.hrtime.bigint();
      let cpu = process.cpuUsage();
      const ok = await raw.send(notices);
      rawRuns.push(n / (Number(process.hrtime.bigint() - t) / 1e9));
      rawCpu.push(cpuPerNotice(cpu, n));
      if (ok !== n) throw new Error(`raw round ${r}: ${ok}/${n} answered 200`);

      t = process.hrtime.bigint();
      cpu = process.cpuUsage();
      const out = await sender.send(notices);
      apnRuns.push(n / (Number(process.hrtime.bigint() - t) / 1e9));
      apnCpu.push(cpuPerNotice(cpu, n));
      const sent = out.filter((o) => o.status === "sent").length;
      if (sent !== n) throw new Error(`node-apn round ${r}: ${sent}/${n} sent (${JSON.stringify(out[0])})`);
    }
  } finally {
    raw.close();
    await sender.close();
    await standin.stop();
  }
  const round = (x: number): number => Math.round(x);
  const round1 = (x: number): number => Math.round(x * 10) / 10;
  const rawMedian = median(rawRuns);
  const apnMedian = median(apnRuns);
  return {
    bench: "push-apns",
    notices: n,
    raw_per_s: { median: round(rawMedian), runs: rawRuns.map(round) },
    nodeapn_per_s: { median: round(apnMedian), runs: apnRuns.map(round) },
    ratio_median: Math.round((apnMedian / rawMedian) * 1000) / 1000,
    cpu_us_per_notice: { raw: round1(median(rawCpu)), nodeapn: round1(median(apnCpu)) },
    sessions: connections,
    standin: mode,
  };
}

if (workerRole() === "standin") {
  await serveFromWorker(startInline);
} else if (isMainThread && process.argv[1] === fileURLToPath(import.meta.url)) {
  const standin = process.argv.includes("--inline") ? "inline" : "worker";
  console.log(JSON.stringify(await run({ standin })));
}

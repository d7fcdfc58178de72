/**
 * Benchmark: N notices to the local FCM stand-in through FcmSender (firebase-admin sendEach over HTTP/2, batches
 * of ≤ 500, several batches in parallel) vs a raw node:http2 client sending the same HTTP v1 requests with the
 * same concurrency (the same number of connections, one batch of the same size in flight on each, the same
 * OAuth2 access token). Rounds alternate which client goes first. By default the stand-in runs in a worker
 * thread of this process, so its TLS/HPACK work does not share the clients' event loop.
 *
 * Both clients reach the stand-in the same way: fcm.googleapis.com:443, redirected by the test seam
 * (test/standins/fcm-redirect.ts) and trusted through the test CA.
 *
 *   node dist/bench/push-fcm.js [--inline]   → one JSON line on stdout
 */
import http2 from "node:http2";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { isMainThread } from "node:worker_threads";
import { cert, SDK_VERSION } from "firebase-admin/app";
import type { Message } from "firebase-admin/messaging";
import { FcmSender, fcmMessage } from "../push/fcm.js";
import type { PushNotice } from "../push/types.js";
import { serveFromWorker, startInWorker, workerRole, type Service } from "./lib.js";
import { installFcmRedirect, uninstallFcmRedirect } from "../test/standins/fcm-redirect.js";
import { FcmStandin } from "../test/standins/fcm-standin.js";

export interface PushFcmBenchOptions {
  notices?: number;
  rounds?: number;
  /** Messages per sendEach() call / per raw batch (default 500). */
  batchSize?: number;
  /** Batches in flight at once = connections for the raw client (default 4). */
  parallelBatches?: number;
  /** "worker" (default): stand-in in a worker thread; "inline": on the main event loop. */
  standin?: "worker" | "inline";
}

export interface PushFcmBenchResult {
  bench: "push-fcm";
  notices: number;
  raw_per_s: { median: number; runs: number[] };
  firebase_per_s: { median: number; runs: number[] };
  ratio_median: number;
}

interface StandinInfo {
  host: string;
  port: number;
  caPem: string;
  serviceAccountPath: string;
  projectId: string;
}

function infoOf(s: FcmStandin): StandinInfo {
  return {
    host: s.host,
    port: s.port,
    caPem: s.caPem,
    serviceAccountPath: s.serviceAccountPath,
    projectId: s.projectId,
  };
}

async function startInline(): Promise<Service<StandinInfo>> {
  const s = await new FcmStandin({ record: false }).start();
  return { info: infoOf(s), stop: () => s.stop() };
}

function startWorker(): Promise<Service<StandinInfo>> {
  return startInWorker<StandinInfo>(import.meta.url, "fcm-standin");
}

function makeNotices(n: number, round: number): PushNotice[] {
  const expiresAt = Math.floor(Date.now() / 1000) + 3600;
  return Array.from({ length: n }, (_, i) => ({
    id: `b${round}-${i}`,
    platform: "android" as const,
    // Real FCM registration tokens are ~150 characters.
    token: `${i.toString(36).padStart(6, "0")}:APA91b${"x".repeat(140)}`,
    kind: "background" as const,
    collapseId: `card-${i % 100}`,
    expiresAt,
    data: { ref: `r${i}` },
  }));
}

/** google.protobuf.Duration JSON, as firebase-admin writes it: "3600s" or "3599.250000000s". */
function secondsString(ms: number): string {
  const sec = Math.floor(ms / 1000);
  const rest = ms - sec * 1000;
  return rest > 0 ? `${sec}.${String(rest).padStart(3, "0")}000000s` : `${sec}s`;
}

/** The JSON body firebase-admin puts on the wire for a message (snake_case android keys, ttl as "<s>s"). */
function wireBody(m: Message): string {
  const android = m.android;
  const wire: Record<string, unknown> = { ...m };
  if (android) {
    const { collapseKey, ttl, ...rest } = android;
    wire.android = {
      ...rest,
      ...(ttl !== undefined ? { ttl: secondsString(ttl) } : {}),
      ...(collapseKey !== undefined ? { collapse_key: collapseKey } : {}),
    };
  }
  return JSON.stringify({ message: wire });
}

class RawClient {
  private sessions: http2.ClientHttp2Session[] = [];

  constructor(
    private readonly path: string,
    private readonly accessToken: string,
    private readonly batchSize: number,
    private readonly parallel: number,
  ) {}

  open(): void {
    for (let i = 0; i < this.parallel; i++) {
      const s = http2.connect("https://fcm.googleapis.com");
      s.on("error", () => undefined);
      this.sessions.push(s);
    }
  }

  /** Same shape as FcmSender.send: batches, `parallel` of them in flight; resolves with the number sent. */
  async send(notices: PushNotice[]): Promise<number> {
    let next = 0;
    let sent = 0;
    const now = Date.now();
    const worker = async (session: http2.ClientHttp2Session): Promise<void> => {
      while (next < notices.length) {
        const batch = notices.slice(next, next + this.batchSize);
        next += this.batchSize;
        const oks = await Promise.all(batch.map((n) => this.post(session, wireBody(fcmMessage(n, now)))));
        sent += oks.filter(Boolean).length;
      }
    };
    await Promise.all(this.sessions.map(worker));
    return sent;
  }

  close(): void {
    for (const s of this.sessions) s.close();
    this.sessions = [];
  }

  private post(session: http2.ClientHttp2Session, body: string): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const stream = session.request({
        ":method": "POST",
        ":scheme": "https",
        ":path": this.path,
        // The same headers firebase-admin sends, so the two clients put the same bytes on the wire.
        "x-firebase-client": `fire-admin-node/${SDK_VERSION}`,
        access_token_auth: "true",
        authorization: `Bearer ${this.accessToken}`,
        "x-goog-api-client": `gl-node/${process.versions.node} fire-admin/${SDK_VERSION}`,
        "content-type": "application/json;charset=utf-8",
      });
      let status = 0;
      const chunks: string[] = [];
      stream.setEncoding("utf8");
      stream.on("response", (h) => {
        status = Number(h[":status"]);
      });
      stream.on("data", (c: string) => chunks.push(c));
      stream.on("end", () => {
        // Parse like a real client: the message name (or the error) is in the body.
        try {
          const parsed = JSON.parse(chunks.join("")) as { name?: unknown };
          resolve(status === 200 && typeof parsed.name === "string");
        } catch {
          resolve(false);
        }
      });
      stream.on("error", () => resolve(false));
      stream.end(body);
    });
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

export async function run(opts: PushFcmBenchOptions = {}): Promise<PushFcmBenchResult> {
  const n = opts.notices ?? 5000;
  const rounds = opts.rounds ?? 3;
  const batchSize = opts.batchSize ?? 500;
  const parallel = opts.parallelBatches ?? 4;
  const standin = (opts.standin ?? "worker") === "worker" ? await startWorker() : await startInline();
  const info = standin.info;
  installFcmRedirect({ host: info.host, port: info.port, ca: info.caPem });

  const sender = new FcmSender({
    serviceAccount: info.serviceAccountPath,
    batchSize,
    parallelBatches: parallel,
    requestTimeoutMs: 60_000,
  });
  // The raw client authenticates like the library does: a jwt-bearer grant for the same service account.
  const token = await cert(info.serviceAccountPath).getAccessToken();
  const raw = new RawClient(
    `/v1/projects/${info.projectId}/messages:send`,
    token.access_token,
    batchSize,
    parallel,
  );
  const rawRuns: number[] = [];
  const fbRuns: number[] = [];
  const elu = { raw: [] as number[], fb: [] as number[] };
  const timeRaw = async (notices: PushNotice[]): Promise<number> => {
    const e0 = performance.eventLoopUtilization();
    const t = process.hrtime.bigint();
    // A hand-written client would keep its connections; opening them is inside the timing to stay conservative.
    raw.open();
    const ok = await raw.send(notices);
    const secs = Number(process.hrtime.bigint() - t) / 1e9;
    elu.raw.push(performance.eventLoopUtilization(e0).active);
    raw.close();
    if (ok !== notices.length) throw new Error(`raw: ${ok}/${notices.length} sent`);
    return notices.length / secs;
  };
  const timeFirebase = async (notices: PushNotice[]): Promise<number> => {
    const e0 = performance.eventLoopUtilization();
    const t = process.hrtime.bigint();
    const out = await sender.send(notices);
    elu.fb.push(performance.eventLoopUtilization(e0).active);
    const secs = Number(process.hrtime.bigint() - t) / 1e9;
    const sent = out.filter((o) => o.status === "sent").length;
    if (sent !== notices.length)
      throw new Error(`firebase: ${sent}/${notices.length} sent (${JSON.stringify(out[0])})`);
    return notices.length / secs;
  };
  try {
    // Warm-up (not counted): OAuth token, JIT of both paths.
    await timeRaw(makeNotices(1000, -1));
    await timeFirebase(makeNotices(1000, -2));
    for (let r = 0; r < rounds; r++) {
      const notices = makeNotices(n, r);
      if (r % 2 === 0) {
        rawRuns.push(await timeRaw(notices));
        fbRuns.push(await timeFirebase(notices));
      } else {
        fbRuns.push(await timeFirebase(notices));
        rawRuns.push(await timeRaw(notices));
      }
    }
  } finally {
    raw.close();
    await sender.close();
    uninstallFcmRedirect();
    await standin.stop();
  }
  if (process.env.BENCH_DEBUG) console.error(JSON.stringify(elu));
  const round = (x: number): number => Math.round(x);
  const rawMedian = median(rawRuns);
  const fbMedian = median(fbRuns);
  return {
    bench: "push-fcm",
    notices: n,
    raw_per_s: { median: round(rawMedian), runs: rawRuns.map(round) },
    firebase_per_s: { median: round(fbMedian), runs: fbRuns.map(round) },
    ratio_median: Math.round((fbMedian / rawMedian) * 1000) / 1000,
  };
}

if (workerRole() === "fcm-standin") {
  await serveFromWorker(startInline);
} else if (isMainThread && process.argv[1] === fileURLToPath(import.meta.url)) {
  const standin = process.argv.includes("--inline") ? "inline" : "worker";
  console.log(JSON.stringify(await run({ standin })));
}

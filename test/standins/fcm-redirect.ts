/**
 * TEST-ONLY seam: sends firebase-admin's two outbound connections to the local FCM stand-in.
 *
 * Why a seam is needed at all: firebase-admin 13.x has no setting for either endpoint.
 * - FCM: `FCM_SEND_HOST = 'fcm.googleapis.com'` is a constant in lib/messaging/messaging.js; `sendEach()` opens
 *   `http2.connect('https://fcm.googleapis.com')` per call and takes no agent (the `httpAgent` app option only
 *   reaches the HTTP/1.1 paths).
 * - OAuth2: google-auth-library (10.x, used by `cert()`) posts the jwt-bearer grant to the constant
 *   `https://oauth2.googleapis.com/token` (lib gtoken/getToken.js). The `token_uri` field of the service-account
 *   file is NOT honoured (checked: nothing reads it).
 *
 * What is redirected, exactly: while installed, `tls.connect` on the `node:tls` module object is wrapped. A call
 * whose target is host `fcm.googleapis.com` or `oauth2.googleapis.com` AND port 443 is rewritten to
 * `host`/`port` of the stand-in, with `servername` left as the original name (so SNI and the certificate's
 * host-name check are still done against the real name) and `ca` set to the stand-in's test CA (for these
 * connections only; every other TLS connection keeps Node's default trust store and is passed through
 * untouched). Both `node:http2` (`connect()`, used by `sendEach`) and `node:https` (`Agent#createConnection`,
 * used by node-fetch inside google-auth-library for the token request) look `tls.connect` up on that module
 * object at call time, so this one wrapper covers both. Nothing else changes: no DNS, no environment, no
 * firebase-admin internals, and the production code (push/fcm.ts) has no hook of any kind.
 */
import tls, { type ConnectionOptions, type TLSSocket } from "node:tls";

export const REDIRECTED_HOSTS: readonly string[] = ["fcm.googleapis.com", "oauth2.googleapis.com"];

export interface RedirectTarget {
  /** Where the stand-in listens, e.g. "127.0.0.1". */
  host: string;
  port: number;
  /** PEM of the CA that issued the stand-in's certificate. */
  ca: string | Buffer;
}

export interface RedirectStats {
  /** Redirected connections per original host name. */
  byHost: Record<string, number>;
  /** TLS connections that went by untouched. */
  passedThrough: number;
}

type TlsConnect = typeof tls.connect;

let original: TlsConnect | undefined;
let stats: RedirectStats = { byHost: {}, passedThrough: 0 };

/** Splits tls.connect's overloads (options[, cb]) and (port[, host][, options][, cb]) into one options object. */
function normalize(args: unknown[]): { options: ConnectionOptions; cb: (() => void) | undefined } {
  let i = 0;
  let options: ConnectionOptions = {};
  let port: number | undefined;
  let host: string | undefined;
  if (typeof args[0] === "number" || typeof args[0] === "string") {
    port = Number(args[i++]);
    if (typeof args[i] === "string") host = args[i++] as string;
  }
  if (args[i] !== null && typeof args[i] === "object") options = { ...(args[i++] as ConnectionOptions) };
  const cb = typeof args[i] === "function" ? (args[i] as () => void) : undefined;
  if (port !== undefined) options.port = port;
  if (host !== undefined) options.host = host;
  return { options, cb };
}

/** Installs the redirect (idempotent: a second install only changes the target). */
export function installFcmRedirect(target: RedirectTarget): void {
  stats = { byHost: {}, passedThrough: 0 };
  const real = original ?? tls.connect;
  original = real;
  const connectWithOptions: (o: ConnectionOptions, cb?: () => void) => TLSSocket = real;
  const wrapped = function (this: unknown, ...args: unknown[]): TLSSocket {
    const { options, cb } = normalize(args);
    const name = options.host ?? "";
    if (REDIRECTED_HOSTS.includes(name) && Number(options.port ?? 443) === 443) {
      stats.byHost[name] = (stats.byHost[name] ?? 0) + 1;
      const redirected: ConnectionOptions = {
        ...options,
        host: target.host,
        port: target.port,
        servername: options.servername || name,
        ca: target.ca,
      };
      return connectWithOptions.call(tls, redirected, cb);
    }
    stats.passedThrough += 1;
    // The overloads cannot be named from a rest array; the arguments are forwarded exactly as received.
    return (real as (...a: unknown[]) => TLSSocket).apply(tls, args);
  };
  tls.connect = wrapped as TlsConnect;
}

/** Restores the original tls.connect. */
export function uninstallFcmRedirect(): void {
  if (original) tls.connect = original;
  original = undefined;
}

export function redirectStats(): RedirectStats {
  return { byHost: { ...stats.byHost }, passedThrough: stats.passedThrough };
}

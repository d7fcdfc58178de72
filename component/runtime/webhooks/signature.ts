/**
 * Standard Webhooks signatures (https://www.standardwebhooks.com/, spec "Signature scheme"): the signed content
 * is `<webhook-id>.<webhook-timestamp>.<body>`, the signature HMAC-SHA256 with the secret's bytes, sent as
 * `webhook-signature: v1,<base64>`. Secrets are written `whsec_<base64 of 24–64 random bytes>`, the form the
 * receivers' libraries (svix, standardwebhooks) take; the prefix is not part of the key.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

export const SECRET_PREFIX = "whsec_";
const MIN_KEY_BYTES = 24;
const MAX_KEY_BYTES = 64;

/** The key bytes of a `whsec_…` secret; throws with a message naming what is wrong (config errors quote it). */
export function secretKey(secret: string): Buffer {
  if (!secret.startsWith(SECRET_PREFIX)) throw new Error(`must start with '${SECRET_PREFIX}'`);
  const b64 = secret.slice(SECRET_PREFIX.length);
  // Buffer.from(…, "base64") skips bad characters silently: check the alphabet first so a typo is an error.
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) throw new Error("is not base64 after 'whsec_'");
  const key = Buffer.from(b64, "base64");
  if (key.length < MIN_KEY_BYTES || key.length > MAX_KEY_BYTES)
    throw new Error(`must hold ${MIN_KEY_BYTES}–${MAX_KEY_BYTES} bytes (has ${key.length})`);
  return key;
}

/** `v1,<base64 HMAC-SHA256(key, id.timestamp.body)>`; timestamp in whole seconds since the epoch. */
export function signature(key: Buffer, id: string, timestampSec: number, body: string): string {
  const mac = createHmac("sha256", key).update(`${id}.${timestampSec}.${body}`, "utf8").digest("base64");
  return `v1,${mac}`;
}

/**
 * True when one of the space-separated signatures of the header (a receiver may see several during a key
 * rotation) is the v1 signature of the content under `key`. For the admin's checks and unit tests; the test
 * stand-in verifies with its own code, so a bug here cannot hide a bug in `signature`.
 */
export function verifySignature(
  key: Buffer,
  id: string,
  timestampSec: number,
  body: string,
  header: string,
): boolean {
  const want = Buffer.from(signature(key, id, timestampSec, body));
  return header.split(" ").some((s) => {
    const got = Buffer.from(s);
    return got.length === want.length && timingSafeEqual(got, want);
  });
}

/**
 * Avatar checks (PROTOCOL.md §22.5): the bytes a client sends are kept and passed on exactly as sent — never
 * decoded into pixels, scaled or re-encoded — so the id every receiver computes (XEP-0084 / XEP-0153: the SHA-1
 * of the image bytes, hex) is the id cardlink publishes. What is checked: base64, the size limit, and that the
 * bytes are the declared type (PNG, JPEG or GIF, by their signature); the width and height are read from the
 * header for XEP-0084's `<info/>`.
 */
import { createHash } from "node:crypto";
import { StanzaError, badRequest } from "../../../stanzas/errors.js";
import type { Avatar } from "../../../stanzas/linked.js";

export const AVATAR_TYPES = ["image/png", "image/jpeg", "image/gif"] as const;

/** The image type the bytes' signature says, with the dimensions from the header when it has them. */
export function sniff(b: Buffer): { type: string; width?: number; height?: number } | undefined {
  if (
    b.length >= 24 &&
    b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))
  )
    // IHDR is the first chunk: width and height at 16 and 20 (big-endian).
    return { type: "image/png", width: b.readUInt32BE(16), height: b.readUInt32BE(20) };
  if (b.length >= 10 && (b.toString("latin1", 0, 6) === "GIF87a" || b.toString("latin1", 0, 6) === "GIF89a"))
    return { type: "image/gif", width: b.readUInt16LE(6), height: b.readUInt16LE(8) };
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) {
    // Walk the segments to the first start-of-frame (SOF0–SOF15 but DHT C4, JPG C8, DAC CC).
    let i = 2;
    while (i + 9 < b.length && b[i] === 0xff) {
      const marker = b[i + 1] as number;
      const len = b.readUInt16BE(i + 2);
      if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc)
        return { type: "image/jpeg", height: b.readUInt16BE(i + 5), width: b.readUInt16BE(i + 7) };
      i += 2 + len;
    }
    return { type: "image/jpeg" };
  }
  return undefined;
}

/** The checked avatar, or a StanzaError (bad-request for base64, not-acceptable for size and type). */
export function checkAvatar(a: { type: string; data: string }, maxBytes: number): Avatar {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(a.data) || a.data.length % 4 !== 0)
    throw badRequest("<avatar/> is not base64");
  const bytes = Buffer.from(a.data, "base64");
  if (bytes.length === 0) throw badRequest("<avatar/> is empty");
  if (bytes.length > maxBytes)
    throw new StanzaError("not-acceptable", `the avatar has ${bytes.length} bytes; at most ${maxBytes}`);
  if (!(AVATAR_TYPES as readonly string[]).includes(a.type))
    throw new StanzaError(
      "not-acceptable",
      `avatar type '${a.type}' is not one of ${AVATAR_TYPES.join(", ")}`,
    );
  const s = sniff(bytes);
  if (!s || s.type !== a.type)
    throw new StanzaError(
      "not-acceptable",
      `the avatar is declared ${a.type} but its bytes are ${s ? s.type : "no PNG, JPEG or GIF"}`,
    );
  return {
    id: createHash("sha1").update(bytes).digest("hex"),
    type: a.type,
    bytes: bytes.length,
    ...(s.width !== undefined ? { width: s.width } : {}),
    ...(s.height !== undefined ? { height: s.height } : {}),
    data: a.data,
  };
}

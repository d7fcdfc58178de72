/**
 * One-time exchange codes (what a QR code carries): the same alphabet, length, grouping and normalisation as
 * component/exchange.ts (the legacy core's copy, deleted at S11); test/unit/features-exchange.test.ts
 * checks that both agree on every input it tries.
 */
import { randomBytes } from "node:crypto";

// Crockford-style alphabet without 0/O, 1/I/L, U: easy to read aloud and type from a card.
export const CODE_ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789";
export const CODE_LENGTH = 10;

/** A fresh code, `XXXXX-XXXXX`. */
export function newCode(): string {
  const bytes = randomBytes(CODE_LENGTH);
  let s = "";
  for (const b of bytes) s += CODE_ALPHABET[b % CODE_ALPHABET.length];
  return `${s.slice(0, 5)}-${s.slice(5)}`;
}

/** The canonical form of what a user typed (case, spaces and dashes ignored), or undefined if it is no code. */
export function normalizeCode(input: string): string | undefined {
  const s = input.toUpperCase().replace(/[\s-]/g, "");
  if (s.length !== CODE_LENGTH || [...s].some((c) => !CODE_ALPHABET.includes(c))) return undefined;
  return `${s.slice(0, 5)}-${s.slice(5)}`;
}

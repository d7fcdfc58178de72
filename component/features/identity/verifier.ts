/**
 * The verification connector (docs/CONFIG.md `identity.verifier*`, PROTOCOL §23.2): cardlink does not send SMS or
 * e-mail itself; it POSTs each code to one configured HTTP(S) endpoint — the operator's SMS/e-mail gateway, or in
 * tests the stand-in of test/standins/verifier-standin.ts — which delivers it. One attempt per code: a failure is
 * the requester's answer (`wait`), and asking again sends a fresh code.
 */

export interface VerificationMessage {
  kind: "tel" | "email";
  /** The identifier the code goes to (E.164 number or lower-cased address). */
  to: string;
  code: string;
  /** `add`: proving a new identifier; `move`: re-verifying the old one of a move. */
  purpose: "add" | "move";
  expires: string;
}

export interface Verifier {
  readonly enabled: boolean;
  send(m: VerificationMessage): Promise<void>;
}

export class VerifierError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "VerifierError";
  }
}

export function httpVerifier(o: { url: string; token: string; timeoutMs: number }): Verifier {
  return {
    enabled: o.url !== "",
    async send(m: VerificationMessage): Promise<void> {
      if (o.url === "") throw new VerifierError("no verification connector is configured");
      let res: Response;
      try {
        res = await fetch(o.url, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            ...(o.token ? { authorization: `Bearer ${o.token}` } : {}),
          },
          body: JSON.stringify(m),
          signal: AbortSignal.timeout(o.timeoutMs),
        });
      } catch (e) {
        throw new VerifierError(`verification connector unreachable: ${(e as Error).message}`);
      }
      // The body is not used; reading it frees the connection.
      await res.arrayBuffer().catch(() => undefined);
      if (res.status < 200 || res.status > 299)
        throw new VerifierError(`verification connector answered HTTP ${res.status}`);
    },
  };
}

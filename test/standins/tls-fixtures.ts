/**
 * Key material for the provider stand-ins, made at start with the openssl CLI in a temporary directory: a test
 * CA, and certificates it signs. Both stand-ins serve real TLS, so clients must trust this CA by configuration
 * (APNs `ca`) or by the test seam (FCM), exactly as a deployment would configure a private CA.
 */
import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

export async function openssl(cwd: string, args: string[]): Promise<void> {
  await execFileAsync("openssl", args, { cwd });
}

/** Decodes one base64url JWT part into an object, or undefined. */
export function b64urlJson(part: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
    return value !== null && typeof value === "object" && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** Writes ca.pem / ca.key (P-256, valid 2 days) into `dir`; returns the CA certificate's path. */
export async function makeTestCa(dir: string, commonName: string): Promise<string> {
  await openssl(dir, [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    `/CN=${commonName}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  return join(dir, "ca.pem");
}

/** Writes the server.ext extension file for a TLS server certificate valid for `sans` (DNS:…, IP:…). */
export async function writeServerExt(dir: string, sans: string[]): Promise<void> {
  await writeFile(
    join(dir, "server.ext"),
    `basicConstraints=CA:FALSE\nsubjectAltName=${sans.join(",")}\n` +
      "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
  );
}

/** Writes server.key / server.pem (P-256) for `commonName`, signed by the test CA, using server.ext. */
export async function issueServerCert(dir: string, commonName: string): Promise<void> {
  await openssl(dir, [
    "req",
    "-new",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    "server.key",
    "-out",
    "server.csr",
    "-subj",
    `/CN=${commonName}`,
  ]);
  await openssl(dir, [
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-days",
    "2",
    "-extfile",
    "server.ext",
    "-out",
    "server.pem",
  ]);
}

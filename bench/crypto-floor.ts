/**
 * The machine's own speed at the one operation a cold JWT check cannot
 * avoid: an RSA-2048 signature verification, as OpenSSL does it (`openssl
 * speed rsa2048`), pinned to the core the gateway runs on. workerd's
 * `crypto.subtle.verify` calls BoringSSL for the same arithmetic, so this is
 * the floor under the RS256 target on this machine: the report sets the
 * in-workerd figure beside it.
 */
import { spawnSync } from "node:child_process";

/** The name the report finds the floor by, in the runtime operations table. */
export const OPENSSL_VERIFY = "RSA-2048 verify, OpenSSL's own (`openssl speed rsa2048`, outside workerd)";

/**
 * µs per RSA-2048 verify by OpenSSL on `cpu`, or undefined when the
 * machine has no `openssl` (or its output is not understood).
 *
 * @example
 * opensslRsaVerify("1", 3); // { name: "RSA-2048 verify, OpenSSL's own …", us: 31.9 }
 */
export function opensslRsaVerify(cpu: string, seconds: number): { name: string; us: number } | undefined {
  const version = spawnSync("openssl", ["version"], { encoding: "utf8" });
  if (version.status !== 0) return undefined;
  const run = spawnSync("taskset", ["-c", cpu, "openssl", "speed", "-seconds", String(seconds), "rsa2048"], { encoding: "utf8", timeout: (seconds * 2 + 30) * 1000 });
  // OpenSSL 1.1 and 3 both end with: "rsa 2048 bits 0.000451s 0.000032s   2219.1  31367.7" (sign s, verify s, sign/s, verify/s).
  const row = /^rsa\s+2048 bits\s+[\d.]+s\s+[\d.]+s\s+[\d.]+\s+([\d.]+)\s*$/m.exec(run.stdout ?? "");
  if (run.status !== 0 || !row) return undefined;
  const perSecond = Number(row[1]);
  if (!(perSecond > 0)) return undefined;
  return { name: `${OPENSSL_VERIFY}, ${version.stdout.trim().split(" ").slice(0, 2).join(" ")}`, us: 1e6 / perSecond };
}

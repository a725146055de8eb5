/**
 * The RS256 floor the benchmark report sets beside workerd's verify: read
 * from `openssl speed`'s last line on the machine it runs on.
 */
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { OPENSSL_VERIFY, opensslRsaVerify } from "../../bench/crypto-floor.ts";

const hasOpenssl = spawnSync("openssl", ["version"]).status === 0;

describe("opensslRsaVerify", () => {
  it.skipIf(!hasOpenssl)("reads OpenSSL's RSA-2048 verifications per second as µs per verify, named with its version", () => {
    const floor = opensslRsaVerify("0", 1);
    expect(floor?.name.startsWith(`${OPENSSL_VERIFY}, OpenSSL `)).toBe(true);
    // An RSA-2048 verify takes tens of µs on any current CPU; a misread column would be off by orders of magnitude.
    expect(floor?.us).toBeGreaterThan(1);
    expect(floor?.us).toBeLessThan(1_000);
  });
});

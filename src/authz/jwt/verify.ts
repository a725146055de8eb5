/**
 * Checks one parsed token against one JWT rule, in Envoy's order: time
 * (60 s skew; `iat` in the future is also rejected, which Envoy does not
 * check), audience (403 when it does not match), then the signature with
 * the rule's keys through jose. jose is given the exact CryptoKey and the
 * single algorithm the token names and the key fits, so `none`, key
 * confusion, embedded keys, `crit` and `b64: false` all end in "Jwt
 * verification fails". jose checks the signature only: the time claims are
 * judged here alone, by jwt_verify_lib's rules (jose's own would refuse a
 * token at exactly `exp` + 60 s, and `exp: 0`, which Envoy accepts).
 */
import { compactVerify } from "jose";
import type { KeySet } from "./keys.ts";
import type { ParsedJwt } from "./parse.ts";
import { JWT_STATUS, type JwtStatus } from "./status.ts";

export const CLOCK_SKEW_SECONDS = 60;

/**
 * Envoy's time checks (jwt_verify_lib: valid until now > exp + skew, and
 * `exp: 0` means no expiry), plus `iat` not in the future.
 *
 * @example
 * timeStatus({ ...jwt, exp: 1_000 }, 1_060_999); // undefined: still within the skew
 * timeStatus({ ...jwt, exp: 1_000 }, 1_061_000); // "Jwt is expired"
 */
export function timeStatus(jwt: ParsedJwt, nowMs: number): JwtStatus | undefined {
  const now = Math.floor(nowMs / 1000);
  if (jwt.nbf !== undefined && jwt.nbf > now + CLOCK_SKEW_SECONDS) return JWT_STATUS.notYetValid;
  if (jwt.iat !== undefined && jwt.iat > now + CLOCK_SKEW_SECONDS) return JWT_STATUS.notYetValid;
  if (jwt.exp && now > jwt.exp + CLOCK_SKEW_SECONDS) return JWT_STATUS.expired;
  return undefined;
}

/** Envoy's audience check: no configured audiences means no check. */
export function audienceAllowed(jwt: ParsedJwt, audiences: readonly string[]): boolean {
  if (audiences.length === 0) return true;
  return jwt.audiences.some((a) => audiences.includes(a));
}

/**
 * Verifies the signature against the candidate keys.
 * @returns undefined when a key verifies the token, else the failure status.
 */
export async function signatureStatus(jwt: ParsedJwt, keys: KeySet): Promise<JwtStatus | undefined> {
  const candidates = keys.candidates(jwt.alg, jwt.kid);
  if (candidates.length === 0) return JWT_STATUS.kidAlgMismatch;
  for (const index of candidates) {
    const key = await keys.cryptoKey(index, jwt.alg);
    if (!key) continue;
    try {
      const { protectedHeader } = await compactVerify(jwt.token, key, { algorithms: [jwt.alg] });
      // What jose's jwtVerify adds to compactVerify that matters here: a JWT's payload is never unencoded.
      if (protectedHeader.b64 === false && protectedHeader.crit?.includes("b64")) continue;
      return undefined;
    } catch {
      // Not this key: try the next candidate.
    }
  }
  return JWT_STATUS.verificationFails;
}

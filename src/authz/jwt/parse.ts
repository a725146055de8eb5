/**
 * A total JWT parser: every input yields either a parsed token or one of
 * Envoy's failure statuses, never an exception (CVE-2019-12995 was a JWT
 * parser crash). It checks the shape jwt_verify_lib checks before any
 * signature work: three base64url segments, JSON object header and
 * payload, a supported `alg`, and the types of the registered claims.
 * Header parameters that name keys (`jwk`, `jku`, `x5u`, `x5c`) are
 * never read.
 */
import { decodeBase64url, decodeBase64urlText } from "./base64url.ts";
import { parseJsonObject, type JsonObject } from "./json-object.ts";
import { JWT_STATUS, type JwtStatus } from "./status.ts";

/** The algorithms Envoy's jwt_authn accepts. `none` is not one of them. */
export const SUPPORTED_ALGS = new Set([
  "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
  "ES256", "ES384", "ES512", "HS256", "HS384", "HS512", "EdDSA",
]);

export interface ParsedJwt {
  token: string;
  alg: string;
  kid?: string;
  header: JsonObject;
  payload: JsonObject;
  /** The payload segment as sent (base64url), for outputPayloadToHeader. */
  payloadSegment: string;
  iss?: string;
  sub?: string;
  audiences: string[];
  /** Seconds since the epoch. */
  exp?: number;
  nbf?: number;
  iat?: number;
}

export type ParseResult = { ok: true; jwt: ParsedJwt } | { ok: false; status: JwtStatus };

/**
 * Parses a compact JWS.
 * @example
 * const r = parseJwt(token);
 * if (!r.ok) return unauthorized(r.status);
 */
export function parseJwt(token: string): ParseResult {
  const fail = (status: JwtStatus): ParseResult => ({ ok: false, status });
  const parts = token.split(".");
  if (parts.length !== 3) return fail(JWT_STATUS.badFormat);
  const [headerSeg, payloadSeg, signatureSeg] = parts as [string, string, string];

  const headerText = decodeBase64urlText(headerSeg);
  if (!headerText.ok) return fail(headerText.reason === "base64" ? JWT_STATUS.headerBadBase64 : JWT_STATUS.headerBadJson);
  const header = parseJsonObject(headerText.text);
  if (!header) return fail(JWT_STATUS.headerBadJson);
  const alg = own(header, "alg");
  if (typeof alg !== "string") return fail(JWT_STATUS.headerBadAlg);
  if (!SUPPORTED_ALGS.has(alg)) return fail(JWT_STATUS.headerUnsupportedAlg);
  const kid = own(header, "kid");
  if (kid !== undefined && typeof kid !== "string") return fail(JWT_STATUS.headerBadKid);

  const payloadText = decodeBase64urlText(payloadSeg);
  if (!payloadText.ok) return fail(payloadText.reason === "base64" ? JWT_STATUS.payloadBadBase64 : JWT_STATUS.payloadBadJson);
  const payload = parseJsonObject(payloadText.text);
  if (!payload) return fail(JWT_STATUS.payloadBadJson);

  const iss = own(payload, "iss");
  if (iss !== undefined && typeof iss !== "string") return fail(JWT_STATUS.issNotString);
  const sub = own(payload, "sub");
  if (sub !== undefined && typeof sub !== "string") return fail(JWT_STATUS.subNotString);
  const jti = own(payload, "jti");
  if (jti !== undefined && typeof jti !== "string") return fail(JWT_STATUS.jtiNotString);
  const aud = own(payload, "aud");
  let audiences: string[] = [];
  if (typeof aud === "string") audiences = [aud];
  else if (Array.isArray(aud)) {
    if (!aud.every((a) => typeof a === "string")) return fail(JWT_STATUS.audNotString);
    audiences = aud as string[];
  } else if (aud !== undefined) return fail(JWT_STATUS.audNotString);

  const times: { exp?: number; nbf?: number; iat?: number } = {};
  for (const [claim, notInteger, outOfRange] of [
    ["exp", JWT_STATUS.expNotInteger, JWT_STATUS.expOutOfRange],
    ["nbf", JWT_STATUS.nbfNotInteger, JWT_STATUS.nbfOutOfRange],
    ["iat", JWT_STATUS.iatNotInteger, JWT_STATUS.iatOutOfRange],
  ] as const) {
    const v = own(payload, claim);
    if (v === undefined) continue;
    if (typeof v !== "number" || !Number.isFinite(v)) return fail(notInteger);
    if (v < 0 || !Number.isSafeInteger(Math.floor(v))) return fail(outOfRange);
    times[claim] = Math.floor(v);
  }

  if (!decodeBase64url(signatureSeg)) return fail(JWT_STATUS.signatureBadBase64);

  const jwt: ParsedJwt = { token, alg, header, payload, payloadSegment: payloadSeg, audiences, ...times };
  if (kid !== undefined) jwt.kid = kid;
  if (iss !== undefined) jwt.iss = iss;
  if (sub !== undefined) jwt.sub = sub;
  return { ok: true, jwt };
}

/** An own property only: a claim named `constructor` or `__proto__` must not reach Object.prototype. */
export function own(object: JsonObject, key: string): unknown {
  return Object.hasOwn(object, key) ? object[key] : undefined;
}

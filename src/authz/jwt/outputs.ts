/**
 * What a verified token changes in the request sent upstream (Envoy's
 * jwt_authn): `outputPayloadToHeader` carries the payload segment as sent
 * (base64url), `outputClaimToHeaders` copies claims (strings as they are,
 * integers in decimal, booleans as true/false, objects and lists as
 * base64 JSON, anything else not at all), and unless
 * `forwardOriginalToken` is set the header that carried the token is
 * removed. Tokens from query parameters and cookies are left in place, as
 * Envoy leaves them.
 */
import { encodeBase64 } from "./base64url.ts";
import type { VerifiedToken } from "./authenticate.ts";
import { own } from "./parse.ts";

export function applyTokenOutputs(headers: Headers, verified: readonly VerifiedToken[]): void {
  for (const { jwt, rule, header } of verified) {
    const def = rule.def;
    if (def.outputPayloadToHeader) setSafely(headers, def.outputPayloadToHeader, jwt.payloadSegment);
    for (const { header: name, claim } of def.outputClaimToHeaders) {
      const value = claimHeaderValue(jwt.payload, claim);
      if (value) setSafely(headers, name, value);
    }
    if (header !== undefined && !def.forwardOriginalToken) headers.delete(header);
  }
}

/** The header value Envoy writes for a claim (`a.b.c` reads nested objects); undefined when it writes none. */
export function claimHeaderValue(payload: Record<string, unknown>, claim: string): string | undefined {
  let node: unknown = payload;
  for (const part of claim.split(".")) {
    if (typeof node !== "object" || node === null || Array.isArray(node)) return undefined;
    node = own(node as Record<string, unknown>, part);
  }
  switch (typeof node) {
    case "string":
      return node;
    case "boolean":
      return node ? "true" : "false";
    case "number":
      return Number.isInteger(node) && node >= 0 ? String(node) : node.toFixed(6);
    case "object":
      return node === null ? undefined : encodeBase64(JSON.stringify(node));
    default:
      return undefined;
  }
}

/** A claim may hold characters a header cannot (CR, LF, NUL); such a claim is not forwarded. */
function setSafely(headers: Headers, name: string, value: string): void {
  if (/[\r\n\0]/.test(value)) return;
  try {
    headers.set(name, value);
  } catch {
    // Not a valid header value for this runtime: leave it out rather than fail the request.
  }
}

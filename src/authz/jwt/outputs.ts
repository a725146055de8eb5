/**
 * What a verified token changes in the request sent upstream (Envoy's
 * jwt_authn): `outputPayloadToHeader` carries the payload segment as sent
 * (base64url), `outputClaimToHeaders` copies claims (strings as they are,
 * integers in decimal, booleans as true/false, objects and lists as
 * base64 JSON, anything else not at all), and unless
 * `forwardOriginalToken` is set the header or query parameter that
 * carried the token is removed (Envoy removes a query parameter's token
 * since envoyproxy/envoy#34418). A token from a cookie is left in place, as
 * Envoy leaves it.
 */
import { decodeQueryPart, type RequestFacts } from "../../gateway/facts.ts";
import { encodeBase64 } from "./base64url.ts";
import type { VerifiedToken } from "./authenticate.ts";
import { own } from "./parse.ts";

export function applyTokenOutputs(facts: RequestFacts, verified: readonly VerifiedToken[]): void {
  const headers = facts.headers;
  for (const { jwt, rule, header, param } of verified) {
    const def = rule.def;
    if (def.outputPayloadToHeader) setSafely(headers, def.outputPayloadToHeader, jwt.payloadSegment);
    for (const { header: name, claim } of def.outputClaimToHeaders) {
      const value = claimHeaderValue(jwt.payload, claim);
      if (value) setSafely(headers, name, value);
    }
    if (def.forwardOriginalToken) continue;
    if (header !== undefined) headers.delete(header);
    if (param !== undefined) facts.query = withoutParam(facts.query, param);
  }
}

/**
 * A query string without every occurrence of a parameter (its name compared
 * decoded, as extraction found it); the other parameters keep their order
 * and their encoding.
 *
 * @example
 * withoutParam("a=1&access_token=xyz&b=2", "access_token") // "a=1&b=2"
 */
export function withoutParam(query: string, name: string): string {
  const kept: string[] = [];
  for (const part of query.split("&")) {
    const eq = part.indexOf("=");
    if (decodeQueryPart(eq < 0 ? part : part.slice(0, eq)) !== name) kept.push(part);
  }
  return kept.join("&");
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

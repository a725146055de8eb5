/**
 * A request header named by a policy or a rate-limit key, as Envoy sees it:
 * a header of the request, or one of HTTP/2's pseudo-headers, which a
 * Worker's `Headers` cannot hold (asking it for `:authority` throws), so
 * they are read from the request's facts instead.
 */
import { pathWithQuery, type RequestFacts } from "./facts.ts";

/** What the pseudo-headers read: the request's authority (with its port, as sent), path, query, method and scheme. */
export interface PseudoHeaderSource {
  authority: string;
  path: string;
  query: string;
  method: string;
  scheme: string;
}

/**
 * The value of a pseudo-header (`:path` with its query, as Envoy's), or
 * undefined for any other name.
 *
 * @example
 * pseudoHeader(":path", { authority: "a.test", path: "/x", query: "q=1", method: "GET", scheme: "https" }) // "/x?q=1"
 */
export function pseudoHeader(name: string, r: PseudoHeaderSource): string | undefined {
  switch (name) {
    case ":authority":
      return r.authority;
    case ":path":
      return pathWithQuery(r);
    case ":method":
      return r.method;
    case ":scheme":
      return r.scheme;
  }
  return undefined;
}

/** The pseudo-headers Envoy's matchers see on a request. */
export const PSEUDO_HEADERS: ReadonlySet<string> = new Set([":authority", ":path", ":method", ":scheme"]);

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * An RFC 9110 token: what `Headers` accepts as a header name, and what a
 * method must be.
 *
 * @example
 * isHttpToken("x-api-key") // true
 * isHttpToken("bad name")  // false
 */
export function isHttpToken(s: string): boolean {
  return TOKEN.test(s);
}

/** Whether a lower-case `name` can be read from a request: a header name, or a pseudo-header. */
export function isRequestHeaderName(name: string): boolean {
  return TOKEN.test(name) || PSEUDO_HEADERS.has(name);
}

/**
 * A reader for a lower-case header name, made once per snapshot: a
 * pseudo-header reads the facts (`:path` with its query, as Envoy's), any
 * other name the request's headers.
 *
 * @example
 * requestHeaderReader(":authority")(facts) // "app.example.com:8443"
 * requestHeaderReader("x-tenant")(facts)   // "acme", or undefined when absent
 */
export function requestHeaderReader(name: string): (facts: RequestFacts) => string | undefined {
  if (PSEUDO_HEADERS.has(name)) return (f) => pseudoHeader(name, f);
  // A name the compiler would refuse (a snapshot written by something else) matches nothing instead of throwing.
  if (!TOKEN.test(name)) return () => undefined;
  return (f) => f.headers.get(name) ?? undefined;
}

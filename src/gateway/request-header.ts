/**
 * A request header named by a policy or a rate-limit key, as Envoy sees it:
 * a header of the request, or one of HTTP/2's pseudo-headers, which a
 * Worker's `Headers` cannot hold (asking it for `:authority` throws), so
 * they are read from the request's facts instead.
 */
import type { RequestFacts } from "./facts.ts";

/** The pseudo-headers Envoy's matchers see on a request. */
export const PSEUDO_HEADERS: ReadonlySet<string> = new Set([":authority", ":path", ":method", ":scheme"]);

/** A header name as `Headers` accepts it (RFC 9110 token), lower case. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;

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
  switch (name) {
    case ":authority":
      return (f) => f.authority;
    case ":path":
      return (f) => (f.query ? `${f.path}?${f.query}` : f.path);
    case ":method":
      return (f) => f.method;
    case ":scheme":
      return (f) => f.scheme;
  }
  // A name the compiler would refuse (a snapshot written by something else) matches nothing instead of throwing.
  if (!TOKEN.test(name)) return () => undefined;
  return (f) => f.headers.get(name) ?? undefined;
}
